"""The supervisors' list of applications that need a person, and what they do to one.

An application lands here (stage ``needs_attention``) when its backend refused it or
never took it within the retry caps (:mod:`bot.submissions`). A supervisor sees why
(the backend's status and a short excerpt of its answer), then sends it back to the
retries, corrects the answers and sends it again, or has an agent contact the citizen.
Each action is one transaction that starts with a conditional UPDATE on
``stage = 'needs_attention'`` (:mod:`bot.attention`), so of two supervisors clicking at
once, on any replicas, one acts and the other is told; each is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import quote

from babel.dates import format_timedelta
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.actions.submission import NEEDS_ATTENTION
from bot.attention import OLDEST_FIRST, back_to_retries, hold, waiting_since
from bot.console.auth import Acting, SignedIn, Staff, client_address
from bot.console.desk import DeskError
from bot.console.rendering import CONSOLE_LANGUAGE, CONSOLE_WORDS, page
from bot.db.models import (
    Application,
    AuditEntry,
    Conversation,
    HandoffKind,
    HandoffNote,
    HandoffStatus,
    StaffMember,
    StaffRole,
    utcnow,
)
from bot.deps import Runtime, RuntimeDep
from bot.handoff import new_handoff, open_handoff
from bot.i18n import N_
from service_connectors.answers import check_answer
from service_connectors.catalogue import Catalogue, Service

LIST_LIMIT = 200
CONTACT_REASON = "needs_attention"  # the handoff's reason
FIELD_PREFIX = "answer."  # the edit form's inputs: answer.<field name>

REASONS = {
    "refused": N_("Refused by the office"),
    "attempts_cap": N_("Too many attempts"),
    "time_cap": N_("Not taken in time"),
}
NO_ANSWER = N_("No answer")
ALREADY_HANDLED = N_("Someone else has already dealt with this application.")
ALREADY_CONTACTING = N_("This citizen is already in the queue about this application.")
NOT_SUPERVISOR = N_("Only supervisors can see the applications that need attention.")
UNKNOWN_SERVICE = N_("This application's service is no longer in the catalogue.")
RETRIED = N_("Application {reference} is back with the retries.")
RESENT = N_("Application {reference} was corrected and is back with the retries.")
CONTACTING = N_("Application {reference}: the citizen is in the {team} queue for an agent.")
NOTE_HEADING = N_(
    "Application {reference} ({service}) needs attention: {reason}. The office answered: {answer}."
)
NOTE_ANSWERS = N_("The citizen's answers:")


def _(message: str, **values: Any) -> str:
    text = CONSOLE_WORDS.gettext(message)
    return text.format(**values) if values else text


def may_handle(staff: StaffMember) -> bool:
    return staff.role == StaffRole.SUPERVISOR


def supervisor(staff: SignedIn) -> Staff:
    if not may_handle(staff.member):
        raise HTTPException(status.HTTP_403_FORBIDDEN, _(NOT_SUPERVISOR))
    return staff


def acting_supervisor(staff: Acting) -> Staff:
    return supervisor(staff)


Supervising = Annotated[Staff, Depends(supervisor)]
ActingSupervisor = Annotated[Staff, Depends(acting_supervisor)]


def reference_of(application: Application) -> str:
    return application.reference or application.provisional_reference


def answer_text(application: Application) -> str:
    """The backend's last answer as staff read it: its status and excerpt."""
    if application.last_error_status is None:
        answer = _(NO_ANSWER)
    else:
        answer = f"HTTP {application.last_error_status}"
    if application.last_error_excerpt:
        answer += f" — {application.last_error_excerpt}"
    return answer


def _service_name(catalogue: Catalogue, code: str) -> str:
    service = catalogue.get(code)
    return _(service.name) if service else code


def attention_row(application: Application, catalogue: Catalogue, now: datetime) -> dict[str, Any]:
    since = waiting_since(application)
    service = catalogue.get(application.service_code)
    labels = {f.name: f.label for f in service.fields} if service else {}
    reason = application.needs_attention_reason or ""
    return {
        "id": application.id,
        "reference": reference_of(application),
        "backend_id": application.backend_id,
        "service": _service_name(catalogue, application.service_code),
        "service_code": application.service_code,
        "connector": application.connector,
        "reason": reason,
        "reason_label": _(REASONS[reason]) if reason in REASONS else reason,
        "status": application.last_error_status,
        "excerpt": application.last_error_excerpt,
        "error_kind": application.last_error_kind,
        "attempts": application.submit_attempts,
        "since": since.isoformat(),
        "age": format_timedelta(
            since - now, add_direction=True, locale=CONSOLE_LANGUAGE, threshold=1
        ),
        "age_seconds": max(0, int((now - since).total_seconds())),
        "fields": [
            {
                "name": f.name,
                "label": _(f.label),
                "value": str(application.answers.get(f.name, "")),
                "required": f.required,
            }
            for f in service.fields
        ]
        if service
        else [
            {"name": name, "label": labels.get(name, name), "value": str(value), "required": True}
            for name, value in application.answers.items()
        ],
    }


async def attention_rows(
    session: AsyncSession, catalogue: Catalogue, now: datetime
) -> list[dict[str, Any]]:
    """Oldest first, from the partial index ``ix_applications_needs_attention``."""
    applications = await session.scalars(OLDEST_FIRST.limit(LIST_LIMIT))
    return [attention_row(a, catalogue, now) for a in applications]


def _audit(
    session: AsyncSession,
    staff: StaffMember,
    action: str,
    application: Application,
    client: str | None,
    handoff_id: str | None = None,
    **detail: Any,
) -> None:
    """Ids and outcomes only: never the answers (they are the citizen's data)."""
    session.add(
        AuditEntry(
            staff_id=staff.id,
            action=action,
            conversation_id=application.conversation_id,
            handoff_id=handoff_id,
            detail={
                "application": application.id,
                "reason": application.needs_attention_reason,
                "attempts": application.submit_attempts,
                **detail,
            },
            client_address=client,
        )
    )


class AnswersInvalid(Exception):  # noqa: N818 (an outcome: the form says what to fix)
    def __init__(self, problems: dict[str, str], labels: dict[str, str]) -> None:
        super().__init__(problems)
        self.problems = problems  # field name → English msgid
        self.labels = labels  # field name → its label (a msgid)

    def explained(self) -> str:
        """For the page: "Child's full name: A name should only have letters." …"""
        return " ".join(
            f"{_(self.labels[name])}: {_(problem)}" for name, problem in self.problems.items()
        )


def checked_answers(
    service: Service, current: dict[str, Any], given: dict[str, str], today: date
) -> dict[str, str]:
    """The edited answers, each checked and normalised as the citizen's form does
    (:func:`service_connectors.answers.check_answer`): a field not given keeps its
    current answer (checked again too), an optional field left empty is dropped.
    AnswersInvalid names every field at fault."""
    answers: dict[str, str] = {}
    problems: dict[str, str] = {}
    for field in service.fields:
        text = given.get(field.name, str(current.get(field.name, "")))
        if not text.strip() and not field.required:
            continue
        check = check_answer(field, text, today)
        if check.value is None:
            problems[field.name] = check.problem or N_("I could not read that answer.")
        else:
            answers[field.name] = check.value
    if problems:
        raise AnswersInvalid(problems, {f.name: f.label for f in service.fields})
    return answers


@dataclass(frozen=True, slots=True)
class AttentionDesk:
    runtime: Runtime
    staff: Staff
    client: str | None

    @property
    def member(self) -> StaffMember:
        return self.staff.member

    async def _needing(self, session: AsyncSession, application_id: str) -> Application:
        application = await session.get(Application, application_id)
        if application is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such application")
        if application.stage != NEEDS_ATTENTION:
            raise DeskError(ALREADY_HANDLED)
        return application

    async def retry(self, session: AsyncSession, application_id: str) -> str:
        application = await self._needing(session, application_id)
        _audit(session, self.member, "attention_retry", application, self.client)
        if not await back_to_retries(session, application_id, utcnow()):
            raise DeskError(ALREADY_HANDLED)
        return _(RETRIED, reference=reference_of(application))

    async def resend(
        self, session: AsyncSession, application_id: str, given: dict[str, str]
    ) -> str:
        application = await self._needing(session, application_id)
        service = self.runtime.catalogue.get(application.service_code)
        if service is None:
            raise DeskError(UNKNOWN_SERVICE)
        answers = checked_answers(service, application.answers, given, date.today())
        changed = sorted(
            name
            for name in {*answers, *application.answers}
            if answers.get(name) != application.answers.get(name)
        )
        refused = application.last_error_kind == "refused"
        _audit(
            session,
            self.member,
            "attention_resend",
            application,
            self.client,
            changed=changed,
            new_idempotency_key=refused and bool(changed),
        )
        moved = await back_to_retries(
            session,
            application_id,
            utcnow(),
            answers,
            new_idempotency_key=refused and bool(changed),
        )
        if not moved:
            raise DeskError(ALREADY_HANDLED)
        return _(RESENT, reference=reference_of(application))

    async def contact(self, session: AsyncSession, application_id: str) -> tuple[str, str]:
        """A handoff for an agent (the team of the service, as when the citizen asks),
        with the collected answers in a note on it; the application stays here until a
        supervisor retries or corrects it. An open handoff of the citizen's gets the
        note instead. Once per application and open handoff."""
        application = await self._needing(session, application_id)
        if not await hold(session, application_id):  # the lock: one click acts
            raise DeskError(ALREADY_HANDLED)
        handoffs = self.runtime.handoffs
        existing = await open_handoff(session, application.citizen_id)
        if existing is not None and await self._noted(session, existing.id, application.id):
            raise DeskError(ALREADY_CONTACTING)
        if existing is None:
            conversation = await session.get(Conversation, application.conversation_id)
            if conversation is None:
                raise DeskError(N_("The citizen's conversation is gone."))
            handoff = new_handoff(
                conversation,
                handoffs.team_for(application.service_code),
                HandoffKind.AGENT,
                HandoffStatus.QUEUED,
                CONTACT_REASON,
                utcnow(),
            )
            session.add(handoff)
            await session.flush()
        else:
            handoff = existing
        session.add(
            HandoffNote(
                handoff_id=handoff.id,
                staff_id=self.member.id,
                text=self._note(application),
            )
        )
        _audit(
            session,
            self.member,
            "attention_contact",
            application,
            self.client,
            handoff_id=handoff.id,
            new_handoff=existing is None,
        )
        notice = _(CONTACTING, reference=reference_of(application), team=handoff.team)
        return notice, handoff.id

    @staticmethod
    async def _noted(session: AsyncSession, handoff_id: str, application_id: str) -> bool:
        details = await session.scalars(
            select(AuditEntry.detail).where(
                AuditEntry.action == "attention_contact", AuditEntry.handoff_id == handoff_id
            )
        )
        return any(detail and detail.get("application") == application_id for detail in details)

    def _note(self, application: Application) -> str:
        """What the agent reads: which application, why, and every answer collected."""
        catalogue = self.runtime.catalogue
        service = catalogue.get(application.service_code)
        labels = {f.name: _(f.label) for f in service.fields} if service else {}
        reason = application.needs_attention_reason or ""
        heading = _(
            NOTE_HEADING,
            reference=reference_of(application),
            service=_service_name(catalogue, application.service_code),
            reason=_(REASONS[reason]) if reason in REASONS else reason,
            answer=answer_text(application),
        )
        lines = [
            f"{labels.get(name, name)}: {value}" for name, value in application.answers.items()
        ]
        return "\n".join([heading, _(NOTE_ANSWERS), *lines])


def _quote(value: str) -> str:
    return quote(value, safe="")


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _back(**message: str) -> Response:
    query = "&".join(f"{key}={_quote(value)}" for key, value in message.items())
    return RedirectResponse(
        "/console/attention" + (f"?{query}" if query else ""), status.HTTP_303_SEE_OTHER
    )


def router() -> APIRouter:
    routes = APIRouter()

    @routes.get("/attention", response_class=HTMLResponse)
    async def attention_page(request: Request, runtime: RuntimeDep, staff: Supervising) -> Response:
        async with runtime.sessions() as session:
            rows = await attention_rows(session, runtime.catalogue, utcnow())
        if wants_json(request):
            return JSONResponse(rows)
        return page(
            "attention.html",
            staff=staff,
            rows=rows,
            error=request.query_params.get("error"),
            notice=request.query_params.get("notice"),
        )

    async def run(request: Request, runtime: Runtime, work: Any) -> Response:
        """One action, one transaction; the outcome (or why not) as JSON or a notice."""
        async with runtime.sessions() as session:
            try:
                outcome = await work(session)
            except DeskError as error:
                await session.rollback()
                explained = error.translated(CONSOLE_WORDS)
                if wants_json(request):
                    return JSONResponse({"error": explained}, status.HTTP_409_CONFLICT)
                return _back(error=explained)
            except AnswersInvalid as invalid:
                await session.rollback()
                problems = {name: _(problem) for name, problem in invalid.problems.items()}
                if wants_json(request):
                    return JSONResponse({"errors": problems}, status.HTTP_422_UNPROCESSABLE_CONTENT)
                return _back(error=invalid.explained())
            await session.commit()
        notice, extra = outcome if isinstance(outcome, tuple) else (outcome, None)
        if wants_json(request):
            body: dict[str, Any] = {"ok": True, "notice": notice}
            if extra is not None:
                body["handoff"] = extra
            return JSONResponse(body)
        return _back(notice=notice)

    @routes.post("/attention/{application_id}/retry")
    async def retry(
        request: Request, application_id: str, runtime: RuntimeDep, staff: ActingSupervisor
    ) -> Response:
        desk = AttentionDesk(runtime, staff, client_address(request))
        return await run(request, runtime, lambda s: desk.retry(s, application_id))

    @routes.post("/attention/{application_id}/resend")
    async def resend(
        request: Request, application_id: str, runtime: RuntimeDep, staff: ActingSupervisor
    ) -> Response:
        form = await request.form()
        given = {
            str(key).removeprefix(FIELD_PREFIX): value[:4000]
            for key, value in form.items()
            if str(key).startswith(FIELD_PREFIX) and isinstance(value, str)
        }
        desk = AttentionDesk(runtime, staff, client_address(request))
        return await run(request, runtime, lambda s: desk.resend(s, application_id, given))

    @routes.post("/attention/{application_id}/contact")
    async def contact(
        request: Request, application_id: str, runtime: RuntimeDep, staff: ActingSupervisor
    ) -> Response:
        desk = AttentionDesk(runtime, staff, client_address(request))
        return await run(request, runtime, lambda s: desk.contact(s, application_id))

    return routes
