"""Status queries, told only to the applicant.

The identity that applied sees the status at once. Anyone else must answer a second
factor from the application's own data (the catalogue's ``verification_field``, e.g. the
child's date of birth); wrong answers are limited per day and logged without the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.actions.context import ActionContext
from bot.actions.menus import is_interruption
from bot.actions.registry import action
from bot.actions.submission import PENDING_SUBMISSION
from bot.db.models import Application, VerificationAttempt, utcnow
from bot.i18n import N_, Localizer
from bot.privacy import mask
from service_connectors.answers import check_answer
from service_connectors.base import ConnectorError, ServiceConnector, Stage
from service_connectors.catalogue import Catalogue, FieldType, find_reference

logger = logging.getLogger(__name__)

APPLICANT = "applicant"
VERIFIED = "verified"
LOCKED = "locked"
VERIFICATION_VALID_FOR = timedelta(minutes=30)
ATTEMPT_WINDOW = timedelta(days=1)
# Built once: STATUS runs it on the fast path, and building it cost more than running it.
BY_REFERENCE = select(Application).where(
    or_(
        Application.reference == bindparam("reference"),
        Application.provisional_reference == bindparam("reference"),
    )
)

STAGE_TEXTS: dict[str, tuple[str, str]] = {
    Stage.RECEIVED: (
        N_("Received"),
        N_("The office has your application. It will be checked soon."),
    ),
    Stage.IN_REVIEW: (
        N_("In review"),
        N_("An officer is checking your application. We will tell you when there is a decision."),
    ),
    Stage.APPROVED: (
        N_("Approved"),
        N_("Your application is approved. We will tell you when it is ready."),
    ),
    Stage.REJECTED: (
        N_("Not approved"),
        N_("Your application was not approved. Reply HELP to talk to a person about it."),
    ),
    Stage.READY_FOR_COLLECTION: (
        N_("Ready for collection"),
        N_("It is ready. Bring your photo ID and this reference to collect it."),
    ),
    PENDING_SUBMISSION: (
        N_("Waiting to be sent"),
        N_(
            "Your application is saved and will be sent to the office"
            " as soon as its system is back."
        ),
    ),
}


async def find_application(ctx: ActionContext, reference: str) -> Application | None:
    return await application_by_reference(ctx.session, reference)


async def application_by_reference(session: AsyncSession, reference: str) -> Application | None:
    """The application with this final or provisional reference."""
    return await session.scalar(BY_REFERENCE, {"reference": reference})


async def _failed_attempts(ctx: ActionContext, application: Application) -> int:
    since = utcnow() - ATTEMPT_WINDOW
    count = await ctx.session.scalar(
        select(func.count(VerificationAttempt.id)).where(
            VerificationAttempt.application_id == application.id,
            VerificationAttempt.identity_id == ctx.conversation.identity_id,
            VerificationAttempt.succeeded.is_(False),
            VerificationAttempt.created_at >= since,
        )
    )
    return int(count or 0)


async def may_disclose(ctx: ActionContext, application: Application) -> bool:
    return await is_disclosable(
        ctx.session, application, ctx.citizen.id, ctx.conversation.identity_id
    )


async def is_disclosable(
    session: AsyncSession, application: Application, citizen_id: str, identity_id: str
) -> bool:
    """The applicant's citizen, or an identity that answered the second factor recently."""
    if application.citizen_id == citizen_id:
        return True
    since = utcnow() - VERIFICATION_VALID_FOR
    verified = await session.scalar(
        select(VerificationAttempt.id).where(
            VerificationAttempt.application_id == application.id,
            VerificationAttempt.identity_id == identity_id,
            VerificationAttempt.succeeded.is_(True),
            VerificationAttempt.created_at >= since,
        )
    )
    return verified is not None


@action("validate_status_form")
async def validate_status_form(ctx: ActionContext) -> None:
    if is_interruption(ctx):
        return
    requested = ctx.requested_slot
    if requested in (None, "reference"):
        await _take_reference(ctx, asked=requested == "reference")
    elif requested == "verification_answer":
        await _take_verification(ctx)


async def _take_reference(ctx: ActionContext, asked: bool) -> None:
    candidates = [*ctx.entities("reference"), ctx.text]
    reference = next((r for r in map(find_reference, candidates) if r), None)
    if reference is None:
        if asked:
            ctx.say(
                ctx._(N_("That does not look like a reference. A reference looks like BC-7K3Q9P."))
            )
            ctx.set_slot("reference", None)
        return
    application = await find_application(ctx, reference)
    if application is None:
        ctx.say(
            ctx._(
                N_(
                    "I cannot find an application with the reference {reference}."
                    " Please check it, or reply EXIT."
                ),
                reference=reference,
            )
        )
        ctx.set_slot("reference", None)
        return
    ctx.set_slot("reference", reference)
    if await may_disclose(ctx, application):
        ctx.set_slot("verification_answer", APPLICANT)
    elif await _failed_attempts(ctx, application) >= ctx.settings.max_verification_attempts:
        ctx.set_slot("verification_answer", LOCKED)
    else:
        ctx.set_slot("verification_answer", None)


def _same_answer(field_type: FieldType, given: str, stored: str) -> bool:
    if field_type in (FieldType.DATE, FieldType.NUMBER, FieldType.CHOICE):
        return given == stored
    return " ".join(given.casefold().split()) == " ".join(stored.casefold().split())


async def _take_verification(ctx: ActionContext) -> None:
    application = await find_application(ctx, str(ctx.slot("reference") or ""))
    service = ctx.service(application.service_code) if application else None
    if application is None or service is None:
        ctx.set_slot("reference", None)
        return
    field = service.field(service.verification_field)
    check = check_answer(field, ctx.text, ctx.today)
    stored = str(application.answers.get(field.name, ""))
    succeeded = check.value is not None and _same_answer(field.type, check.value, stored)
    ctx.session.add(
        VerificationAttempt(
            application_id=application.id,
            identity_id=ctx.conversation.identity_id,
            succeeded=succeeded,
        )
    )
    await ctx.session.flush()
    if succeeded:
        ctx.set_slot("verification_answer", VERIFIED)
        return
    failures = await _failed_attempts(ctx, application)
    logger.warning(
        "wrong status verification for application %s from %s (%d today)",
        application.id,
        mask(ctx.conversation.identity_id),
        failures,
    )
    remaining = ctx.settings.max_verification_attempts - failures
    if remaining <= 0:
        ctx.set_slot("verification_answer", LOCKED)
        return
    ctx.say(
        ctx.words.ngettext(
            "That does not match. You can try {count} more time.",
            "That does not match. You can try {count} more times.",
            remaining,
        ).format(count=remaining)
    )
    ctx.set_slot("verification_answer", None)


@action("action_ask_reference")
async def ask_reference(ctx: ActionContext) -> None:
    ctx.say(ctx._(N_("What is your application reference? It looks like BC-7K3Q9P.")))


@action("action_ask_verification_answer")
async def ask_verification(ctx: ActionContext) -> None:
    application = await find_application(ctx, str(ctx.slot("reference") or ""))
    service = ctx.service(application.service_code) if application else None
    if service is None:
        await ask_reference(ctx)
        return
    field = service.field(service.verification_field)
    ctx.say(
        ctx._(
            N_(
                "To protect your privacy, please answer a question about this application."
                " {question}"
            ),
            question=ctx._(field.prompt),
        )
    )


@action("action_check_status")
async def check_status(ctx: ActionContext) -> None:
    reference = str(ctx.slot("reference") or "")
    verification = ctx.slot("verification_answer")
    ctx.set_slot("reference", None)
    ctx.set_slot("verification_answer", None)
    application = await find_application(ctx, reference)
    if verification == LOCKED:
        ctx.say(
            ctx._(
                N_(
                    "For your security, this status is locked after too many wrong answers."
                    " Please try again tomorrow, or call {phone}."
                ),
                phone=ctx.settings.call_centre_phone,
            )
        )
        return
    if application is None or not await may_disclose(ctx, application):
        ctx.say(ctx._(N_("I cannot show the status of this application.")))
        return
    await ctx.session.commit()  # the verification's record first: none waits on the backend
    ctx.say(await status_text(application, ctx.words, ctx.catalogue, ctx.connectors))


async def status_text(
    application: Application,
    words: Localizer,
    catalogue: Catalogue,
    connectors: Mapping[str, ServiceConnector],
) -> str:
    """The stage, what it means and what comes next, refreshed from the backend if it
    answers (the stage stored with the application otherwise)."""
    connector = connectors.get(application.connector)
    if application.backend_id and connector is not None:
        try:
            report = await connector.get_status(application.backend_id)
            application.stage = report.stage.value
        except ConnectorError as exc:
            logger.warning("status of %s unavailable: %s", application.id, exc)
    return describe_stage(application, words, catalogue)


def describe_stage(application: Application, words: Localizer, catalogue: Catalogue) -> str:
    """ "Birth certificate BC-7K3Q9P: In review. An officer is checking…" in ``words``."""
    stage = application.stage
    service = catalogue.get(application.service_code)
    label, meaning = STAGE_TEXTS.get(stage, (stage, ""))
    return (
        words.gettext(N_("{service} {reference}: {stage}. {meaning}"))
        .format(
            service=words.gettext(service.name) if service else application.service_code,
            reference=application.reference or application.provisional_reference,
            stage=words.gettext(label),
            meaning=words.gettext(meaning) if meaning else "",
        )
        .strip()
    )
