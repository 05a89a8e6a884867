"""What an agent does to a conversation: claim, reply, note, transfer, hand back, close,
act for the citizen through the connectors, start an SMS conversation.

Each function works in the caller's transaction and writes its audit row there, so an
action and its record commit together. Claims are compare-and-set updates: of two agents
pressing "claim" at once, one wins and the other is told.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.actions.status import status_text
from bot.actions.submission import PENDING_SUBMISSION, citizen_reference, submission_of
from bot.db.models import (
    Application,
    ApplicationDraft,
    AuditEntry,
    ChannelIdentity,
    Citizen,
    Conversation,
    Handoff,
    HandoffKind,
    HandoffNote,
    HandoffStatus,
    StaffMember,
    StaffRole,
    utcnow,
)
from bot.handoff import FEEDBACK_QUESTION, Handoffs, Recipient, new_handoff, open_handoff
from bot.i18n import N_, Localizer, localizer
from service_connectors.base import ConnectorError, ServiceConnector, SubmissionRejected
from service_connectors.catalogue import Catalogue, new_reference

logger = logging.getLogger(__name__)

CLOSED_BY_TEAM = N_("Our team has closed this conversation. Thank you for contacting us.")
FILED_FOR_YOU = N_(
    "Our team has sent your application for: {service}. Your reference is {reference}."
    " To follow it, reply STATUS {reference}."
)
SAVED_FOR_YOU = N_(
    "Our team has saved your application for: {service}. It will be sent as soon as the"
    " office's system answers. Your provisional reference is {reference}."
)
CONTINUE_BY_TEXT = N_(
    "Hello, this is {organisation}. As agreed on the phone, you can write to us here."
    " Reply STOP to stop messages."
)
# How a conversation ended, for reports: code → label shown to staff.
OUTCOMES = {
    "resolved": N_("Resolved"),
    "application_filed": N_("Application filed"),
    "information_given": N_("Information given"),
    "called_back": N_("Called back"),
    "no_answer": N_("No answer"),
}
ROLE_LABELS = {StaffRole.AGENT: N_("Agent"), StaffRole.SUPERVISOR: N_("Supervisor")}


class DeskError(Exception):
    """An action the agent cannot take now; the message says why (shown to them)."""

    def __init__(self, message: str, **values: str) -> None:
        super().__init__(message.format(**values))
        self.message, self.values = message, values

    def translated(self, words: Localizer) -> str:
        return words.gettext(self.message).format(**self.values)


def may_see(staff: StaffMember, handoff: Handoff) -> bool:
    """Supervisors see every queue; agents their teams' and what they own."""
    return (
        staff.role == StaffRole.SUPERVISOR
        or handoff.team in (staff.teams or [])
        or handoff.agent_id == staff.id
    )


def audit(
    session: AsyncSession,
    staff: StaffMember | None,
    action: str,
    handoff: Handoff | None = None,
    client: str | None = None,
    **detail: Any,
) -> None:
    session.add(
        AuditEntry(
            staff_id=staff.id if staff else None,
            action=action,
            conversation_id=handoff.conversation_id if handoff else None,
            handoff_id=handoff.id if handoff else None,
            detail=detail or None,
            client_address=client,
        )
    )


@dataclass
class Desk:
    handoffs: Handoffs
    catalogue: Catalogue
    connectors: Mapping[str, ServiceConnector]

    async def claim(self, session: AsyncSession, handoff: Handoff, staff: StaffMember) -> None:
        result = await session.execute(
            update(Handoff)
            .where(Handoff.id == handoff.id, Handoff.status == HandoffStatus.QUEUED)
            .values(status=HandoffStatus.CLAIMED, agent_id=staff.id, claimed_at=utcnow())
        )
        if not getattr(result, "rowcount", 0):
            raise DeskError(N_("Someone else has already taken this conversation."))
        await session.refresh(handoff)
        audit(session, staff, "claim", handoff)

    def _require_owner(self, handoff: Handoff, staff: StaffMember) -> None:
        if handoff.status != HandoffStatus.CLAIMED:
            raise DeskError(N_("Claim the conversation first."))
        if handoff.agent_id != staff.id and staff.role != StaffRole.SUPERVISOR:
            raise DeskError(N_("Another agent owns this conversation."))

    async def reply(
        self, session: AsyncSession, handoff: Handoff, staff: StaffMember, text: str
    ) -> None:
        """The agent's words on the citizen's channel (an SMS is composed and paged)."""
        self._require_owner(handoff, staff)
        if not text.strip():
            raise DeskError(N_("The reply is empty."))
        target = await self._target(session, handoff)
        await self.handoffs.tell(session, target, text.strip(), staff_id=staff.id)
        audit(session, staff, "reply", handoff, characters=len(text))

    async def note(
        self, session: AsyncSession, handoff: Handoff, staff: StaffMember, text: str
    ) -> None:
        if not text.strip():
            raise DeskError(N_("The note is empty."))
        session.add(HandoffNote(handoff_id=handoff.id, staff_id=staff.id, text=text.strip()))
        audit(session, staff, "note", handoff)

    async def transfer(
        self,
        session: AsyncSession,
        handoff: Handoff,
        staff: StaffMember,
        to_staff: StaffMember | None = None,
        to_team: str | None = None,
    ) -> None:
        """To a colleague (they own it now) or back to a team's queue."""
        if handoff.status == HandoffStatus.CLOSED:
            raise DeskError(N_("This conversation is closed."))
        if staff.role != StaffRole.SUPERVISOR:
            self._require_owner(handoff, staff)
        if to_staff is not None:
            if not to_staff.active:
                raise DeskError(N_("That colleague's account is not active."))
            handoff.agent_id, handoff.status = to_staff.id, HandoffStatus.CLAIMED
            handoff.claimed_at = handoff.claimed_at or utcnow()
            audit(session, staff, "transfer", handoff, to_staff=to_staff.username)
        elif to_team:
            handoff.team, handoff.agent_id = to_team, None
            handoff.status = HandoffStatus.QUEUED
            audit(session, staff, "transfer", handoff, to_team=to_team)
        else:
            raise DeskError(N_("Choose a colleague or a team."))

    async def hand_back(
        self,
        session: AsyncSession,
        handoff: Handoff,
        staff: StaffMember,
        form_open: bool | None = None,
    ) -> bool:
        """The bot answers again. The citizen is told so once, with the bot's open
        question asked again (a form Rasa still has open: ``form_open``, None when
        unknown), else with the one feedback question. True when a question was
        asked again (the form is to take the next message as its answer)."""
        self._require_owner(handoff, staff)
        target = await self._target(session, handoff)
        told = await self.handoffs.handed_back(session, handoff, target.words, form_open)
        handoff.status, handoff.outcome = HandoffStatus.CLOSED, "handed_back"
        handoff.closed_at = utcnow()
        await self.handoffs.tell(session, target, told.text, told.buttons)
        audit(session, staff, "hand_back", handoff)
        return handoff.resume_message_id is not None  # (cleared when nothing is pending)

    async def close(
        self, session: AsyncSession, handoff: Handoff, staff: StaffMember, outcome: str
    ) -> None:
        if outcome not in OUTCOMES:
            raise DeskError(N_("Choose an outcome."))
        if handoff.status == HandoffStatus.CLOSED:
            raise DeskError(N_("This conversation is already closed."))
        if handoff.status == HandoffStatus.CLAIMED:
            self._require_owner(handoff, staff)
        handoff.resume_message_id = None  # closed: no question to come back to
        await session.execute(  # and no application half-filled by the bot
            delete(ApplicationDraft).where(
                ApplicationDraft.conversation_id == handoff.conversation_id
            )
        )
        await self._end(session, handoff, outcome, CLOSED_BY_TEAM)
        audit(session, staff, "close", handoff, outcome=outcome)

    async def _end(self, session: AsyncSession, handoff: Handoff, outcome: str, text: str) -> None:
        now = utcnow()
        handoff.status, handoff.outcome, handoff.closed_at = HandoffStatus.CLOSED, outcome, now
        handoff.feedback_asked_at = now
        target = await self._target(session, handoff)
        words = target.words
        await self.handoffs.tell(
            session, target, f"{words.gettext(text)} {words.gettext(FEEDBACK_QUESTION)}"
        )

    async def file_application(
        self, session: AsyncSession, handoff: Handoff, staff: StaffMember
    ) -> Application:
        """File the draft the citizen started, as the bot would: committed first, then
        sent; an outage leaves it to the retries (nothing lost)."""
        self._require_owner(handoff, staff)
        draft = await session.scalar(
            select(ApplicationDraft).where(
                ApplicationDraft.conversation_id == handoff.conversation_id
            )
        )
        service = self.catalogue.get(draft.service_code) if draft else None
        if draft is None or service is None:
            raise DeskError(N_("There is no application in progress."))
        missing = service.next_missing_field(draft.answers)
        if missing is not None:
            raise DeskError(N_("The application is missing: {field}."), field=missing.label)
        target = await self._target(session, handoff)
        application = Application(
            provisional_reference=new_reference(service.prefix),
            service_code=service.code,
            connector=service.connector,
            citizen_id=handoff.citizen_id,
            identity_id=target.identity.id,
            conversation_id=handoff.conversation_id,
            answers=dict(draft.answers),
            language=target.words.language,
        )  # "submitting": a crash from here on leaves it to the retries
        session.add(application)
        await session.commit()  # before the backend is called: no transaction waits on it
        connector = self.connectors.get(service.connector)
        words = target.words
        try:
            if connector is None:
                raise ConnectorError(f"connector {service.connector} is not configured")
            receipt = await connector.submit(submission_of(application))
        except SubmissionRejected as rejection:
            await session.delete(application)
            await session.commit()  # the error below rolls back only what follows
            fields = ", ".join(rejection.field_errors) or "unknown"
            raise DeskError(
                N_("The office refused the application (fields: {fields})."), fields=fields
            ) from None
        except ConnectorError as exc:
            logger.warning("application %s kept for retry: %s", application.id, exc)
            application.stage = PENDING_SUBMISSION  # bot.submissions retries it
            application.next_attempt_at = utcnow()
            application.submit_attempts = 1
            text = words.gettext(SAVED_FOR_YOU)
        else:
            application.reference = citizen_reference(application)
            application.backend_id = receipt.backend_id
            application.stage = receipt.stage.value
            application.next_attempt_at = None
            text = words.gettext(FILED_FOR_YOU)
        await session.delete(draft)
        handoff.resume_message_id = None  # filed: the form's question is no longer open
        reference = application.reference or application.provisional_reference
        text = text.format(service=words.gettext(service.name), reference=reference)
        await self.handoffs.tell(session, target, text, staff_id=staff.id)
        audit(session, staff, "file_application", handoff, application=application.id)
        return application

    async def look_up_status(
        self, session: AsyncSession, handoff: Handoff, staff: StaffMember, application_id: str
    ) -> str:
        """The status as the backend reports it now, for the agent to read or relay."""
        application = await session.get(Application, application_id)
        if application is None or application.citizen_id != handoff.citizen_id:
            raise DeskError(N_("That application is not this citizen's."))
        words = localizer("en")
        await session.commit()  # nothing written yet: no transaction waits on the backend
        text = await status_text(application, words, self.catalogue, self.connectors)
        audit(session, staff, "look_up_status", handoff, application=application.id)
        return text

    async def continue_by_text(
        self,
        session: AsyncSession,
        staff: StaffMember,
        identity: ChannelIdentity,
        conversation: Conversation,
        language: str,
        organisation: str,
        team: str,
    ) -> Handoff:
        """A caller on the phone gets an SMS from us, in their language; their answers
        come to this agent. Never to an opted-out number."""
        if identity.opted_out_at is not None:
            raise DeskError(N_("This number has opted out of messages (STOP)."))
        existing = await open_handoff(session, conversation.citizen_id)
        if existing is not None and existing.status == HandoffStatus.CLAIMED:
            raise DeskError(N_("Another agent already has this citizen's conversation."))
        if existing is not None:
            existing.status, existing.outcome = HandoffStatus.CLOSED, "superseded"
            existing.closed_at = utcnow()
            await session.flush()
        citizen = await session.get(Citizen, conversation.citizen_id)
        if citizen is not None and citizen.language is None:
            citizen.language = language
        now = utcnow()
        handoff = new_handoff(
            conversation,
            team,
            HandoffKind.AGENT,
            HandoffStatus.CLAIMED,
            "agent",
            now,
            agent_id=staff.id,
            claimed_at=now,
        )
        session.add(handoff)
        await session.flush()
        words = localizer(language)
        text = words.gettext(CONTINUE_BY_TEXT).format(organisation=words.gettext(organisation))
        target = Recipient(conversation, identity, words)
        await self.handoffs.tell(session, target, text, staff_id=staff.id)
        audit(session, staff, "continue_by_text", handoff, language=language)
        return handoff

    async def _target(self, session: AsyncSession, handoff: Handoff) -> Recipient:
        target = await self.handoffs.recipient(session, handoff)
        if target is None:
            raise DeskError(N_("The citizen's conversation is gone."))
        return target
