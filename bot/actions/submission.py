"""Filing a completed application: committed locally first, then sent to its backend.

The application row (with its idempotency key and a provisional reference) is committed
before the backend is called, so an outage never loses it: the citizen keeps the
provisional reference and the row waits in ``pending_submission`` for a retry.
"""

from __future__ import annotations

import logging

from bot.actions.context import ActionContext, load_draft
from bot.actions.protocol import followup
from bot.actions.registry import action
from bot.db.models import Application
from bot.i18n import N_
from service_connectors.base import (
    BackendUnavailable,
    ConnectorError,
    Receipt,
    Submission,
    SubmissionRejected,
)
from service_connectors.catalogue import Service, find_reference, new_reference

logger = logging.getLogger(__name__)
PENDING_SUBMISSION = "pending_submission"
# A backend refused it, or never took it within the caps: a person must look (issue 24).
NEEDS_ATTENTION = "needs_attention"
SUBMITTING = "submitting"


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
    )
    ctx.session.add(application)
    await ctx.session.commit()  # the outbox: nothing after this point can lose it

    connector = ctx.connectors.get(service.connector)
    try:
        if connector is None:
            raise BackendUnavailable(f"connector {service.connector} is not configured")
        receipt = await connector.submit(submission_of(application))
    except SubmissionRejected as rejection:
        await _ask_again(ctx, service, application, rejection)
        return
    except ConnectorError as exc:
        logger.warning("application %s kept for retry: %s", application.id, exc)
        application.stage = PENDING_SUBMISSION  # bot.submissions retries it
        application.submit_attempts = 1
        await ctx.session.delete(draft)
        _reset_form(ctx)
        ctx.say(
            ctx._(
                N_(
                    "The office's system is not answering right now. Your application is saved"
                    " and will be sent as soon as it is back. Your provisional reference is"
                    " {reference}."
                ),
                reference=application.provisional_reference,
            )
        )
        return
    application.reference = citizen_reference(receipt, application)
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


async def _ask_again(
    ctx: ActionContext, service: Service, application: Application, rejection: SubmissionRejected
) -> None:
    """The backend refused a field: ask that question again instead of a dead end."""
    await ctx.session.delete(application)
    draft = await load_draft(ctx)
    field_name = next(
        (name for name in rejection.field_errors if name in draft_names(service)), None
    )
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


def submission_of(application: Application) -> Submission:
    """What the backend is sent, the same on every attempt (its idempotency key too)."""
    return Submission(
        service_code=application.service_code,
        fields=application.answers,
        idempotency_key=application.idempotency_key,
        language=application.language,
    )


def citizen_reference(receipt: Receipt, application: Application) -> str:
    """The backend's reference when it is one a citizen can type back (``BC-7K3Q9P``);
    otherwise (an Open311 id like ``638344``) our provisional one stays theirs, and the
    backend's id is kept as ``backend_id``."""
    return (
        receipt.reference
        if find_reference(receipt.reference)
        else application.provisional_reference
    )


def draft_names(service: Service) -> set[str]:
    return {field.name for field in service.fields}
