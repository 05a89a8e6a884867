"""The console's pages and actions: the queue, a conversation, and what agents do to it.

Pages are server-rendered; forms post and redirect back (no build step, no framework).
A client asking for JSON (``Accept: application/json``) gets JSON instead: the page's
script and the API tests use that. Every page view and action is audited.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.actions.general import FORM_SLOTS
from bot.actions.protocol import active_loop, slot_set
from bot.console.auth import Acting, SignedIn, Staff, client_address
from bot.console.desk import Desk, DeskError, audit, may_see
from bot.console.rendering import CONSOLE_WORDS, page
from bot.console.views import conversation_view, queue_rows, teams_known
from bot.conversation import ConversationService
from bot.db.models import ChannelIdentity, Conversation, Handoff, StaffMember, utcnow
from bot.deps import Runtime, RuntimeDep
from bot.i18n import N_
from bot.rasa_client import RasaUnavailable
from channels.sms.phone import InvalidPhoneNumberError, to_e164

logger = logging.getLogger(__name__)
Text = Annotated[str, Form(max_length=4000)]
DIALOGUE_SLOTS = (*FORM_SLOTS, "requested_slot")


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def desk_of(runtime: Runtime) -> Desk:
    return Desk(runtime.handoffs, runtime.catalogue, runtime.connectors)


async def visible_handoff(session: AsyncSession, handoff_id: str, staff: Staff) -> Handoff:
    """The handoff if this staff member may see it; 404 otherwise (no probing of ids)."""
    handoff = await session.get(Handoff, handoff_id)
    if handoff is None or not may_see(staff.member, handoff):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such conversation in your queues")
    return handoff


DeskAction = Callable[[AsyncSession, Handoff], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Scope:
    """One agent action on one handoff: who, on what, and how to answer."""

    request: Request
    runtime: Runtime
    staff: Staff
    handoff_id: str

    @property
    def member(self) -> StaffMember:
        return self.staff.member

    @property
    def desk(self) -> Desk:
        return desk_of(self.runtime)

    async def run(self, action: DeskAction) -> Response:
        """Run ``action`` in one transaction; back to the page (or JSON) with the
        outcome, or with why it could not be done."""
        async with self.runtime.sessions() as session:
            handoff = await visible_handoff(session, self.handoff_id, self.staff)
            try:
                notice = await action(session, handoff)
            except DeskError as error:
                await session.rollback()
                explained = error.translated(CONSOLE_WORDS)
                if wants_json(self.request):
                    return JSONResponse({"error": explained}, status.HTTP_409_CONFLICT)
                return _back(self.handoff_id, error=explained)
            await session.commit()
        await self.runtime.outbox.send_due()  # the citizen's message now, not next round
        if wants_json(self.request):
            return JSONResponse({"ok": True, "notice": notice})
        return _back(self.handoff_id, notice=notice)


async def action_scope(
    request: Request, handoff_id: str, runtime: RuntimeDep, staff: Acting
) -> Scope:
    return Scope(request, runtime, staff, handoff_id)


ActionScope = Annotated[Scope, Depends(action_scope)]


def router() -> APIRouter:
    routes = APIRouter()

    @routes.get("", response_class=HTMLResponse)
    async def queue_page(runtime: RuntimeDep, staff: SignedIn) -> Response:
        async with runtime.sessions() as session:
            rows = await queue_rows(session, staff.member, utcnow())
        return page("queue.html", staff=staff, rows=rows)

    @routes.get("/api/queue")
    async def queue_json(runtime: RuntimeDep, staff: SignedIn) -> list[dict[str, Any]]:
        async with runtime.sessions() as session:
            return await queue_rows(session, staff.member, utcnow())

    @routes.get("/handoffs/{handoff_id}", response_class=HTMLResponse)
    async def conversation_page(
        request: Request, handoff_id: str, runtime: RuntimeDep, staff: SignedIn
    ) -> Response:
        async with runtime.sessions() as session:
            handoff = await visible_handoff(session, handoff_id, staff)
            view = await conversation_view(session, handoff, runtime.catalogue)
            audit(session, staff.member, "open", handoff, client=client_address(request))
            await session.commit()
            colleagues = list(
                await session.scalars(
                    select(StaffMember)
                    .where(StaffMember.active.is_(True), StaffMember.id != staff.member.id)
                    .order_by(StaffMember.display_name)
                )
            )
            teams = await teams_known(session, runtime.settings)
        if wants_json(request):
            return JSONResponse(view)
        return page(
            "conversation.html",
            staff=staff,
            view=view,
            colleagues=colleagues,
            teams=teams,
            error=request.query_params.get("error"),
            notice=request.query_params.get("notice"),
        )

    @routes.get("/api/handoffs/{handoff_id}/messages")
    async def new_messages(
        handoff_id: str, runtime: RuntimeDep, staff: SignedIn, after: int = 0
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            handoff = await visible_handoff(session, handoff_id, staff)
            view = await conversation_view(session, handoff, runtime.catalogue, after=after)
        return {"messages": view["messages"], "handoff": view["handoff"]}

    @routes.post("/handoffs/{handoff_id}/claim")
    async def claim(scope: ActionScope) -> Response:
        return await scope.run(lambda s, h: scope.desk.claim(s, h, scope.member))

    @routes.post("/handoffs/{handoff_id}/reply")
    async def reply(scope: ActionScope, text: Text) -> Response:
        return await scope.run(lambda s, h: scope.desk.reply(s, h, scope.member, text))

    @routes.post("/handoffs/{handoff_id}/note")
    async def note(scope: ActionScope, text: Text) -> Response:
        return await scope.run(lambda s, h: scope.desk.note(s, h, scope.member, text))

    @routes.post("/handoffs/{handoff_id}/transfer")
    async def transfer(
        scope: ActionScope,
        to_staff: Annotated[str, Form(max_length=32)] = "",
        to_team: Annotated[str, Form(max_length=64)] = "",
    ) -> Response:
        async def run(session: AsyncSession, handoff: Handoff) -> None:
            colleague = await session.get(StaffMember, to_staff) if to_staff else None
            if to_staff and colleague is None:
                raise DeskError(N_("No such colleague."))
            await scope.desk.transfer(session, handoff, scope.member, colleague, to_team or None)

        return await scope.run(run)

    @routes.post("/handoffs/{handoff_id}/hand-back")
    async def hand_back(scope: ActionScope) -> Response:
        runtime = scope.runtime
        async with runtime.sessions() as session:
            handoff = await visible_handoff(session, scope.handoff_id, scope.staff)
            conversation = await session.get(Conversation, handoff.conversation_id)
            dialogue = conversation.rasa_sender if conversation else None
        # Before the citizen is told (they may answer at once), outside any transaction.
        form_open = await reopen_form(runtime, dialogue) if dialogue else None
        resumed: list[bool] = []

        async def run(session: AsyncSession, handoff: Handoff) -> None:
            resumed.append(await scope.desk.hand_back(session, handoff, scope.member, form_open))

        response = await scope.run(run)
        if dialogue and form_open and resumed == [False]:  # nothing to come back to
            await end_form(runtime, dialogue)
        return response

    @routes.post("/handoffs/{handoff_id}/close")
    async def close(scope: ActionScope, outcome: Annotated[str, Form(max_length=32)]) -> Response:
        dialogues: list[str] = []

        async def run(session: AsyncSession, handoff: Handoff) -> None:
            await scope.desk.close(session, handoff, scope.member, outcome)
            conversation = await session.get(Conversation, handoff.conversation_id)
            dialogues.extend([conversation.rasa_sender] if conversation else [])

        response = await scope.run(run)
        for dialogue in dialogues:  # closed: the bot starts afresh next time
            await end_form(scope.runtime, dialogue)
        return response

    @routes.post("/handoffs/{handoff_id}/file")
    async def file_application(scope: ActionScope) -> Response:
        async def run(session: AsyncSession, handoff: Handoff) -> str:
            application = await scope.desk.file_application(session, handoff, scope.member)
            reference = application.reference or application.provisional_reference
            return f"Application filed: {reference} ({application.stage})."

        return await scope.run(run)

    @routes.post("/handoffs/{handoff_id}/status")
    async def look_up_status(
        scope: ActionScope, application_id: Annotated[str, Form(max_length=32)]
    ) -> Response:
        return await scope.run(
            lambda s, h: scope.desk.look_up_status(s, h, scope.member, application_id)
        )

    @routes.get("/continue", response_class=HTMLResponse)
    async def continue_form(request: Request, runtime: RuntimeDep, staff: SignedIn) -> Response:
        return page(
            "continue.html",
            staff=staff,
            languages=runtime.settings.supported_languages,
            error=request.query_params.get("error"),
        )

    @routes.post("/continue")
    async def continue_by_text(
        request: Request,
        runtime: RuntimeDep,
        staff: Acting,
        phone: Annotated[str, Form(max_length=32)],
        language: Annotated[str, Form(max_length=8)],
    ) -> Response:
        settings = runtime.settings
        if language not in settings.supported_languages:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "unsupported language")
        try:
            number = to_e164(phone, settings.default_phone_region)
        except InvalidPhoneNumberError:
            return _error(request, "/console/continue", "That is not a phone number we can text.")
        conversations = ConversationService(
            settings, runtime.sessions, runtime.rasa, runtime.handoffs
        )
        participant = await conversations.participant("sms", number)
        team = (staff.member.teams or [settings.handoff_default_team])[0]
        async with runtime.sessions() as session:
            identity = await session.get(ChannelIdentity, participant.identity_id)
            conversation = await session.get(Conversation, participant.conversation_id)
            assert identity is not None and conversation is not None
            try:
                handoff = await desk_of(runtime).continue_by_text(
                    session,
                    staff.member,
                    identity,
                    conversation,
                    language,
                    settings.organisation_name,
                    team,
                )
            except DeskError as error:
                return _error(request, "/console/continue", error.translated(CONSOLE_WORDS))
            await session.commit()
        await runtime.outbox.send_due()
        if wants_json(request):
            return JSONResponse({"handoff": handoff.id})
        return RedirectResponse(f"/console/handoffs/{handoff.id}", status.HTTP_303_SEE_OTHER)

    return routes


async def end_form(runtime: Runtime, dialogue: str) -> None:
    """Close any form Rasa still has open for ``dialogue``; a failure only leaves the
    form open (the citizen can still CANCEL), so it is logged, not raised."""
    events = [active_loop(None), *(slot_set(name, None) for name in DIALOGUE_SLOTS)]
    try:
        await runtime.rasa.append_events(dialogue, events)
    except RasaUnavailable as exc:
        logger.warning("could not close the form of dialogue %s: %s", dialogue, exc)


async def reopen_form(runtime: Runtime, dialogue: str) -> bool | None:
    """Whether Rasa has a form open for ``dialogue`` (None: it cannot say). An open one
    is set active again, so that it takes the citizen's next message as the answer to
    its question: the request for a person interrupted it, and an interrupted form
    would only ask its question again."""
    try:
        form = await runtime.rasa.resume_loop(dialogue)
    except RasaUnavailable as exc:
        logger.warning("could not resume the form of dialogue %s: %s", dialogue, exc)
        return None
    return form is not None


def _back(handoff_id: str, **message: str | None) -> Response:
    query = "&".join(
        f"{key}={_quote(value)}" for key, value in message.items() if value is not None
    )
    url = f"/console/handoffs/{handoff_id}" + (f"?{query}" if query else "")
    return RedirectResponse(url, status.HTTP_303_SEE_OTHER)


def _error(request: Request, url: str, error: str) -> Response:
    if wants_json(request):
        return JSONResponse({"error": error}, status.HTTP_409_CONFLICT)
    return RedirectResponse(f"{url}?error={_quote(error)}", status.HTTP_303_SEE_OTHER)


def _quote(value: str) -> str:
    return quote(value, safe="")
