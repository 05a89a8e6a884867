"""Filing a completed application: committed locally first, then sent to its backend.

The application row (with its idempotency key and a provisional reference) is committed
before the backend is called, so an outage never loses it: the citizen keeps the
provisional reference and the row waits in ``pending_submission`` for a retry.

Every answer that is not an acceptance is classified (:func:`record_failure`, shared with
the retries of :mod:`bot.submissions`): a transient one (no answer, a timeout, 429, 5xx) is
retried with backoff, up to the connector's caps (attempts, hours since the first); a
refusal (4xx, a GeoReport error list, the same server error K times in a row) or a cap
reached moves the application to ``needs_attention``, where a person looks at it. The
citizen is told which: "saved, the office's system is not answering" only when that is
true. A refusal naming one of the citizen's answers asks that question again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.actions.context import ActionContext, load_draft
from bot.actions.protocol import followup
from bot.actions.registry import action
from bot.db.models import Application, ApplicationDraft, as_utc, utcnow
from bot.i18n import N_
from bot.metrics import GatewayMetrics
from bot.outbox import backoff
from service_connectors.base import (
    EXCERPT_LIMIT,
    OUTAGE_STATUSES,
    BackendRefused,
    BackendTransient,
    ConnectorConfig,
    ConnectorError,
    ServiceConnector,
    Submission,
    SubmissionRejected,
    excerpt,
)
from service_connectors.catalogue import Service, new_reference

logger = logging.getLogger(__name__)
PENDING_SUBMISSION = "pending_submission"
# A backend refused it, or never took it within the caps: a person must look (issue 24).
NEEDS_ATTENTION = "needs_attention"
SUBMITTING = "submitting"
# Application.last_error_kind
TRANSIENT, REFUSED = "transient", "refused"
# Application.needs_attention_reason
REASON_REFUSED, REASON_ATTEMPTS_CAP, REASON_TIME_CAP = "refused", "attempts_cap", "time_cap"

NOT_ANSWERING = N_(
    "The office's system is not answering right now. Your application is saved"
    " and will be sent as soon as it is back. Your provisional reference is"
    " {reference}."
)
NEEDS_A_PERSON = N_(
    "The office's system did not accept your application, so a member of our staff will"
    " check it. It is saved: your provisional reference is {reference}. We will write to"
    " you here, in this conversation, when it is sent or if we need anything from you."
)


@dataclass(frozen=True, slots=True)
class Caps:
    """When a connector's retries stop (see ``ConnectorConfig``)."""

    max_attempts: int = 12
    max_hours: float = 72.0
    same_error_refuses: int = 3

    @classmethod
    def of(cls, config: ConnectorConfig | None) -> Caps:
        if config is None:
            return cls()
        return cls(config.max_attempts, config.max_hours, config.same_error_refuses)


def record_failure(
    application: Application,
    error: ConnectorError,
    caps: Caps,
    retry_base_seconds: float,
    now: datetime | None = None,
) -> str | None:
    """Record one attempt the backend did not accept (``submit_attempts`` already counts
    it): ``last_error_*`` and ``same_error_count``, then either the next attempt
    (``pending_submission``; returns None) or ``needs_attention`` (returns its reason)."""
    now = now or utcnow()
    status = getattr(error, "status", None)
    summary = getattr(error, "excerpt", "") or excerpt(str(error))
    summary = summary[:EXCERPT_LIMIT]
    refused = isinstance(error, BackendRefused)
    kind = REFUSED if refused else TRANSIENT
    same = (
        application.last_error_kind == kind
        and application.last_error_status == status
        and application.last_error_excerpt == summary
    )
    application.same_error_count = (application.same_error_count or 0) + 1 if same else 1
    application.last_error_status, application.last_error_excerpt = status, summary
    # None: the first attempt of a round (filing, or a supervisor sent it back).
    first = as_utc(application.first_attempt_at or now)
    application.first_attempt_at = first
    # A server error that is not an outage (500, 501…), with the same body K times in a
    # row: the server chokes on this application, and will again.
    chokes = (
        status is not None
        and status >= 500
        and status not in OUTAGE_STATUSES
        and application.same_error_count >= caps.same_error_refuses
    )
    reason: str | None = None
    if refused or chokes:
        kind, reason = REFUSED, REASON_REFUSED
    elif application.submit_attempts >= caps.max_attempts:
        reason = REASON_ATTEMPTS_CAP
    elif now - first >= timedelta(hours=caps.max_hours):
        reason = REASON_TIME_CAP
    application.last_error_kind = kind
    if reason is not None:
        application.stage = NEEDS_ATTENTION
        application.next_attempt_at = None
        application.needs_attention_since = now
        application.needs_attention_reason = reason
        return reason
    asked = error.retry_after if isinstance(error, BackendTransient) else None
    if asked is not None:  # the backend said when: not before
        due = now + timedelta(seconds=asked)
    else:  # the last attempt falls on the time cap, not hours after it
        due = min(
            now + backoff(application.submit_attempts, retry_base_seconds),
            first + timedelta(hours=caps.max_hours),
        )
    application.stage = PENDING_SUBMISSION
    application.next_attempt_at = due
    return None


def log_failure(application: Application, reason: str | None, metrics: GatewayMetrics) -> None:
    """One line a supervisor can act on: the application, what the backend answered (its
    status and excerpt, never the citizen's answers) and what happens next."""
    status = application.last_error_status
    answered = f"HTTP {status}" if status is not None else "no answer"
    if reason is None:
        logger.warning(
            "application %s not accepted (%s, %s: %s); attempt %d, next at %s",
            application.id,
            application.last_error_kind,
            answered,
            application.last_error_excerpt,
            application.submit_attempts,
            application.next_attempt_at,
        )
        return
    metrics.needs_attention.labels(application.connector, reason).inc()
    logger.error(
        "application %s needs attention (%s) after %d attempts: %s: %s",
        application.id,
        reason,
        application.submit_attempts,
        answered,
        application.last_error_excerpt,
    )


def _reset_form(ctx: ActionContext) -> None:
    for slot in ("service", "field_answer", "confirmation"):
        ctx.set_slot(slot, None)


@action("action_submit_application")
async def submit_application(ctx: ActionContext) -> None:
    draft = await load_draft(ctx)
    service = ctx.service(draft.service_code) if draft else None
    if draft is None or service is None:
        _reset_form(ctx)
        ctx.say(ctx._(N_("There is no application to send. Reply HELP to see what I can do.")))
        return
    application = Application(
        provisional_reference=new_reference(service.prefix),
        service_code=service.code,
        connector=service.connector,
        citizen_id=ctx.citizen.id,
        identity_id=ctx.conversation.identity_id,
        conversation_id=ctx.conversation.id,
        answers=dict(draft.answers),
        language=ctx.words.language,
        first_attempt_at=utcnow(),
    )
    ctx.session.add(application)
    await ctx.session.commit()  # the outbox: nothing after this point can lose it

    connector = ctx.connectors.get(service.connector)
    try:
        if connector is None:
            raise BackendTransient(f"connector {service.connector} is not configured")
        receipt = await connector.submit(submission_of(application))
    except SubmissionRejected as rejection:
        if asked_field(service, rejection) is not None:
            await _ask_again(ctx, service, application, rejection)
            return
        await _not_filed(ctx, application, draft, rejection, connector)
        return
    except ConnectorError as exc:
        await _not_filed(ctx, application, draft, exc, connector)
        return
    application.reference = citizen_reference(application)
    application.backend_id = receipt.backend_id
    application.stage = receipt.stage.value
    await ctx.session.delete(draft)
    _reset_form(ctx)
    logger.info("application %s filed with %s", application.id, service.connector)
    ctx.say(
        ctx._(
            N_(
                "Your application for: {service} is sent. Your reference is {reference}."
                " To follow it, reply STATUS {reference}."
            ),
            service=ctx._(service.name),
            reference=application.reference,
        )
    )


async def _not_filed(
    ctx: ActionContext,
    application: Application,
    draft: ApplicationDraft,
    error: ConnectorError,
    connector: ServiceConnector | None,
) -> None:
    """The first attempt failed: retried later, or straight to a person; the citizen is
    told which, truthfully."""
    application.submit_attempts = 1
    caps = Caps.of(connector.config if connector is not None else None)
    reason = record_failure(application, error, caps, ctx.settings.submission_retry_base_seconds)
    log_failure(application, reason, ctx.metrics)
    await ctx.session.delete(draft)
    _reset_form(ctx)
    message = NOT_ANSWERING if reason is None else NEEDS_A_PERSON
    ctx.say(ctx._(message, reference=application.provisional_reference))


async def _ask_again(
    ctx: ActionContext, service: Service, application: Application, rejection: SubmissionRejected
) -> None:
    """The backend refused one of the citizen's answers: ask that question again."""
    await ctx.session.delete(application)
    draft = await load_draft(ctx)
    field_name = asked_field(service, rejection)
    if draft is None or field_name is None:
        _reset_form(ctx)
        ctx.say(
            ctx._(
                N_("The office could not accept this application. Reply HELP to talk to a person.")
            )
        )
        return
    field = service.field(field_name)
    draft.answers = {k: v for k, v in draft.answers.items() if k != field_name}
    draft.editing_field = field_name
    ctx.say(
        ctx._(N_("The office could not accept the answer for: {field}."), field=ctx._(field.label))
    )
    ctx.set_slot("field_answer", None)
    ctx.set_slot("confirmation", None)
    ctx.emit(followup("application_form"))


def asked_field(service: Service | None, rejection: SubmissionRejected) -> str | None:
    """The first field the refusal names that the citizen answered (None: none)."""
    names = draft_names(service) if service is not None else set()
    return next((name for name in rejection.field_errors if name in names), None)


def submission_of(application: Application) -> Submission:
    """What the backend is sent, the same on every attempt (its idempotency key too)."""
    return Submission(
        service_code=application.service_code,
        fields=application.answers,
        idempotency_key=application.idempotency_key,
        language=application.language,
    )


def citizen_reference(application: Application) -> str:
    """The reference the citizen keeps: the gateway's (``PH-7K3Q9P``, the one they were
    given when they applied), stored beside the backend's id (``backend_id``, for staff).
    A backend's id is never read as a reference — an Open311 id like ``zpn9b29p``, or the
    reference backend's own ``BC-…``, looks like one (issue 24)."""
    return application.provisional_reference


def draft_names(service: Service) -> set[str]:
    return {field.name for field in service.fields}
