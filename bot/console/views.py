"""What the console shows: the queue rows and one conversation, as plain dicts (for the
templates and for JSON alike)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.console.desk import may_see
from bot.db.models import (
    Application,
    ApplicationDraft,
    Conversation,
    Handoff,
    HandoffNote,
    HandoffStatus,
    Message,
    StaffMember,
    as_utc,
    utcnow,
)
from bot.settings import Settings
from service_connectors.catalogue import Catalogue

TRANSCRIPT_LIMIT = 200


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment else None


async def _names(session: AsyncSession) -> dict[str, str]:
    rows = await session.execute(select(StaffMember.id, StaffMember.display_name))
    return {staff_id: name for staff_id, name in rows}


def handoff_dict(handoff: Handoff, names: dict[str, str], now: datetime) -> dict[str, Any]:
    return {
        "id": handoff.id,
        "status": handoff.status,
        "kind": handoff.kind,
        "team": handoff.team,
        "channel": handoff.channel,
        "reason": handoff.reason,
        "agent": names.get(handoff.agent_id or ""),
        "agent_id": handoff.agent_id,
        "queued_at": _iso(handoff.queued_at),
        "waiting_minutes": max(0, int((now - as_utc(handoff.queued_at)).total_seconds() // 60)),
        "callback_at": _iso(handoff.callback_at),
        "callback_number": handoff.callback_number,
        "outcome": handoff.outcome,
        "feedback_score": handoff.feedback_score,
    }


async def queue_rows(
    session: AsyncSession, staff: StaffMember, now: datetime
) -> list[dict[str, Any]]:
    """Open handoffs this staff member may see: waiting first (oldest first), then owned."""
    handoffs = await session.scalars(
        select(Handoff)
        .where(Handoff.status.in_((HandoffStatus.QUEUED, HandoffStatus.CLAIMED)))
        .order_by(Handoff.status.desc(), Handoff.queued_at)
    )
    names = await _names(session)
    return [handoff_dict(h, names, now) for h in handoffs if may_see(staff, h)]


async def queue_fingerprint(session: AsyncSession, staff: StaffMember) -> str:
    """Changes whenever the visible queue does (for the live stream)."""
    handoffs = await session.scalars(
        select(Handoff)
        .where(Handoff.status.in_((HandoffStatus.QUEUED, HandoffStatus.CLAIMED)))
        .order_by(Handoff.id)
    )
    return "|".join(
        f"{h.id}:{h.status}:{h.agent_id}:{h.updated_at}" for h in handoffs if may_see(staff, h)
    )


async def last_message_id(session: AsyncSession, citizen_id: str) -> int:
    latest = await session.scalar(
        select(func.max(Message.id))
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.citizen_id == citizen_id)
    )
    return int(latest or 0)


async def conversation_view(
    session: AsyncSession, handoff: Handoff, catalogue: Catalogue, after: int = 0
) -> dict[str, Any]:
    """The transcript on every device of the citizen, with what the bot understood, the
    application being filled in, the citizen's applications and the internal notes."""
    names = await _names(session)
    messages = list(
        await session.scalars(
            select(Message)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Conversation.citizen_id == handoff.citizen_id, Message.id > after)
            .order_by(Message.id.desc())
            .limit(TRANSCRIPT_LIMIT)
        )
    )
    transcript = [
        {
            "id": m.id,
            "direction": m.direction,
            "channel": m.channel,
            "text": m.text,
            "intent": m.intent,
            "author": names.get(m.staff_id or "")
            if m.staff_id
            else ("citizen" if m.direction == "in" else "bot"),
            "options": [b["title"] for b in m.buttons or []],
            "at": _iso(m.created_at),
        }
        for m in reversed(messages)
    ]
    draft = await session.scalar(
        select(ApplicationDraft).where(ApplicationDraft.conversation_id == handoff.conversation_id)
    )
    draft_view = None
    if draft is not None:
        service = catalogue.get(draft.service_code)
        labels = {f.name: f.label for f in service.fields} if service else {}
        missing = service.next_missing_field(draft.answers) if service else None
        draft_view = {
            "service": service.name if service else draft.service_code,
            "fields": [
                {"label": labels.get(name, name), "value": value}
                for name, value in draft.answers.items()
            ],
            "complete": service is not None and missing is None,
            "missing": missing.label if missing else None,
        }
    applications = [
        {
            "id": a.id,
            "reference": a.reference or a.provisional_reference,
            "backend_id": a.backend_id,  # the office's own number: for staff, never a reference
            "service": _service_name(catalogue, a.service_code),
            "stage": a.stage,
        }
        for a in await session.scalars(
            select(Application)
            .where(Application.citizen_id == handoff.citizen_id)
            .order_by(Application.created_at.desc())
        )
    ]
    notes = [
        {"author": names.get(n.staff_id, "?"), "text": n.text, "at": _iso(n.created_at)}
        for n in await session.scalars(
            select(HandoffNote)
            .join(Handoff, Handoff.id == HandoffNote.handoff_id)
            .where(Handoff.citizen_id == handoff.citizen_id)
            .order_by(HandoffNote.id)
        )
    ]
    return {
        "handoff": handoff_dict(handoff, names, utcnow()),
        "messages": transcript,
        "draft": draft_view,
        "applications": applications,
        "notes": notes,
    }


def _service_name(catalogue: Catalogue, code: str) -> str:
    service = catalogue.get(code)
    return service.name if service else code


async def teams_known(session: AsyncSession, settings: Settings) -> list[str]:
    teams = {settings.handoff_default_team, *settings.handoff_teams.values()}
    for staff_teams in await session.scalars(select(StaffMember.teams)):
        teams.update(staff_teams or [])
    return sorted(teams)
