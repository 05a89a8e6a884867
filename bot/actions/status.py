"""Status queries, told only to the applicant.

The identity that applied sees the status at once. Anyone else must answer a second
factor from the application's own data (the catalogue's ``verification_field``, e.g. the
child's date of birth); wrong answers are limited per day and logged without the answer:
per identity (``MAX_VERIFICATION_ATTEMPTS``) and per application from every identity and
channel together (``MAX_VERIFICATION_ATTEMPTS_PER_APPLICATION``, then only the applicant
sees it), spaced out after each one (``VERIFICATION_DELAY_SECONDS``, doubled per failure),
and staff are alerted at ``VERIFICATION_ALERT_FAILURES``. The count is read from the
database under a lock on the application's row, so replicas cannot both let one through.
What is not a guess (the reference typed again, an "ok", a date that is not a date) is
asked again without counting.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.actions.context import ActionContext
from bot.actions.menus import intent_payload, is_interruption
from bot.actions.registry import action
from bot.actions.submission import NEEDS_ATTENTION, PENDING_SUBMISSION
from bot.conversation import LAST_MENU
from bot.db.leases import lock_application
from bot.db.models import (
    Application,
    AuditEntry,
    Message,
    VerificationAttempt,
    as_utc,
    utcnow,
)
from bot.i18n import N_, Localizer, localizer
from bot.privacy import mask
from channels.base import Button
from channels.sms.keywords import STATUS_WORDS, fold, status_reference
from service_connectors.answers import check_answer
from service_connectors.base import ConnectorError, ServiceConnector, Stage
from service_connectors.catalogue import (
    EXAMPLE_REFERENCE,
    Catalogue,
    FieldType,
    ServiceField,
    find_reference,
    is_example_reference,
)

logger = logging.getLogger(__name__)

STATUS_AFTER_FORM = N_(
    "To check {reference}, send STATUS {reference} again when this application is finished."
)

APPLICANT = "applicant"
VERIFIED = "verified"
LOCKED = "locked"
VERIFICATION_VALID_FOR = timedelta(minutes=30)
ATTEMPT_WINDOW = timedelta(days=1)
VERIFICATION_DELAY_CAP = timedelta(hours=1)
# Small talk is not a guess at a second factor ("ok" after a hand-back, "thanks").
SMALL_TALK_INTENTS = frozenset({"greet", "goodbye", "affirm", "deny", "thank"})
SMALL_TALK_CONFIDENCE = 0.6
VERIFICATION_ALERT = "verification_alert"  # the audit log's action (staff_id None: the system)

THE_REFERENCE_AGAIN = N_("That is the application's reference, not the answer: it was not counted.")
TOO_SOON = N_(
    "For your security, please wait {duration} before answering again. That answer was not checked."
)
WAIT_BEFORE_NEXT = N_("Please wait {duration} before answering again.")
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
    NEEDS_ATTENTION: (
        N_("Being checked by our staff"),
        N_(
            "The office's system did not take it automatically. A member of our staff is"
            " checking it and will write to you."
        ),
    ),
}


async def find_application(ctx: ActionContext, reference: str) -> Application | None:
    return await application_by_reference(ctx.session, reference)


async def application_by_reference(session: AsyncSession, reference: str) -> Application | None:
    """The application with this final or provisional reference."""
    return await session.scalar(BY_REFERENCE, {"reference": reference})


# Wrong answers to one application from every identity since a time, and the latest.
FAILURES_SINCE = select(
    func.count(VerificationAttempt.id), func.max(VerificationAttempt.created_at)
).where(
    VerificationAttempt.application_id == bindparam("application_id"),
    VerificationAttempt.succeeded.is_(False),
    VerificationAttempt.created_at >= bindparam("since"),
)


@dataclass(frozen=True, slots=True)
class Failures:
    """An application's wrong second-factor answers in the last day, all identities."""

    count: int
    last_at: datetime | None

    def wait(self, base_seconds: float, now: datetime) -> timedelta:
        """How long the next answer must wait: the base after the first wrong answer,
        doubled per further one, an hour at most (nothing when there is none)."""
        if self.last_at is None or self.count == 0 or base_seconds <= 0:
            return timedelta(0)
        delay = min(
            timedelta(seconds=base_seconds * 2 ** min(self.count - 1, 20)),
            VERIFICATION_DELAY_CAP,
        )
        return max(timedelta(0), self.last_at + delay - now)


async def application_failures(
    session: AsyncSession, application_id: str, now: datetime
) -> Failures:
    found = await session.execute(
        FAILURES_SINCE, {"application_id": application_id, "since": now - ATTEMPT_WINDOW}
    )
    count, last_at = found.one()
    return Failures(int(count or 0), as_utc(last_at) if last_at is not None else None)


async def _failed_attempts(ctx: ActionContext, application: Application) -> int:
    since = ctx.clock() - ATTEMPT_WINDOW
    count = await ctx.session.scalar(
        select(func.count(VerificationAttempt.id)).where(
            VerificationAttempt.application_id == application.id,
            VerificationAttempt.identity_id == ctx.conversation.identity_id,
            VerificationAttempt.succeeded.is_(False),
            VerificationAttempt.created_at >= since,
        )
    )
    return int(count or 0)


async def verification_locked(ctx: ActionContext, application: Application) -> bool:
    """Too many wrong answers today: from this identity, or from everyone together."""
    if await _failed_attempts(ctx, application) >= ctx.settings.max_verification_attempts:
        return True
    failures = await application_failures(ctx.session, application.id, ctx.clock())
    return failures.count >= ctx.settings.max_verification_attempts_per_application


async def may_disclose(ctx: ActionContext, application: Application) -> bool:
    return await is_disclosable(
        ctx.session,
        application,
        ctx.citizen.id,
        ctx.conversation.identity_id,
        ctx.settings.max_verification_attempts_per_application,
        ctx.clock(),
    )


async def is_disclosable(
    session: AsyncSession,
    application: Application,
    citizen_id: str,
    identity_id: str,
    application_limit: int | None = None,
    now: datetime | None = None,
) -> bool:
    """The applicant's citizen, or an identity that answered the second factor recently
    (unless ``application_limit`` wrong answers were given today: applicant only)."""
    if application.citizen_id == citizen_id:
        return True
    now = now or utcnow()
    if application_limit is not None:
        failures = await application_failures(session, application.id, now)
        if failures.count >= application_limit:
            return False
    since = now - VERIFICATION_VALID_FOR
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
        named = status_reference(ctx.text)
        if named is not None and named != ctx.slot("reference"):
            await _take_reference(ctx, asked=True)  # STATUS <another reference>: that one
        else:
            await _take_verification(ctx)


# The reference question. Its example is visibly fake and never a reference
# (EXAMPLE_REFERENCE); the applications this conversation filed are offered first.
ASK_REFERENCE = N_(
    "What is your application reference? It is two letters, a dash and six letters or"
    " digits, like {example}."
)
NOT_A_REFERENCE = N_(
    "That does not look like a reference. A reference is two letters, a dash and six"
    " letters or digits, like {example}."
)
ONLY_AN_EXAMPLE = N_(
    "{example} is only an example. Your reference is in the message we sent when you applied."
)
YOUR_APPLICATION = N_("{reference} (your application of {date})")
OFFERED_APPLICATIONS = 3  # the latest ones: a menu, not a list of everything ever filed
FILED_HERE = (
    select(Application)
    .where(Application.conversation_id == bindparam("conversation_id"))
    .order_by(Application.created_at.desc(), Application.id.desc())
    .limit(OFFERED_APPLICATIONS)
)


# The bot's last message, as the conversation reads its menu: here its text.
LAST_SAID = LAST_MENU.with_only_columns(Message.text)


async def reference_asked(
    session: AsyncSession, conversation_id: str, languages: tuple[str, ...]
) -> bool:
    """Whether the dialogue's open question is the reference (the bot's last words):
    then ``STATUS <reference>`` is its answer, for the dialogue to take (a fast path that
    answered instead would leave the question open, and the next message taken for a
    reference)."""
    said = await session.scalar(LAST_SAID, {"conversation_id": conversation_id})
    return said is not None and said in _reference_questions(languages)


@lru_cache(maxsize=8)
def _reference_questions(languages: tuple[str, ...]) -> frozenset[str]:
    return frozenset(
        localizer(code).gettext(ASK_REFERENCE).format(example=EXAMPLE_REFERENCE)
        for code in languages
    )


def named_reference(ctx: ActionContext) -> str | None:
    """The reference the message names: ``STATUS <reference>`` in any supported
    language, a pressed option's entity, or one typed alone or in a sentence."""
    candidates = [*ctx.entities("reference"), ctx.text]
    return status_reference(ctx.text) or next(
        (r for r in map(find_reference, candidates) if r), None
    )


async def _take_reference(ctx: ActionContext, asked: bool) -> None:
    reference = named_reference(ctx)
    if reference is None:
        if is_example_reference(ctx.text):  # copied from a prompt
            ctx.say(ctx._(ONLY_AN_EXAMPLE, example=EXAMPLE_REFERENCE))
            ctx.set_slot("reference", None)
        elif asked:
            ctx.say(ctx._(NOT_A_REFERENCE, example=EXAMPLE_REFERENCE))
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
    elif await verification_locked(ctx, application):
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
    if find_reference(ctx.text) in (application.reference, application.provisional_reference):
        ctx.say(ctx._(THE_REFERENCE_AGAIN))  # asked again, not counted
        ctx.set_slot("verification_answer", None)
        return
    check = check_answer(field, ctx.text, ctx.today)
    if check.value is None or _small_talk(ctx):
        # Not a guess: no value of this field reads like that ("ok" after a hand-back,
        # a date that is not a date). Asked again, neither checked nor counted.
        if check.problem and check.value is None:
            ctx.say(f"{ctx._(check.problem)} {ctx._(field.hint)}")
        ctx.set_slot("verification_answer", None)
        return
    await _check_answer(ctx, application, field, check.value)


def _small_talk(ctx: ActionContext) -> bool:
    """A word or two of conversation ("ok", "thanks"), confidently understood so."""
    words = ctx.text.split()
    return (
        ctx.intent in SMALL_TALK_INTENTS
        and ctx.intent_confidence >= SMALL_TALK_CONFIDENCE
        and 0 < len(words) <= 2
        and not any(ch.isdigit() for ch in ctx.text)
    )


async def _check_answer(
    ctx: ActionContext, application: Application, field: ServiceField, given: str
) -> None:
    """Count and check one answer, in one short transaction holding the application's
    row: the day's failures from every identity decide whether it may be checked."""
    settings, now = ctx.settings, ctx.clock()
    # Before an answer is counted or checked: two answers to one application (two
    # replicas) are counted one after the other.
    await lock_application(ctx.session, application.id)
    failures = await application_failures(ctx.session, application.id, now)
    if failures.count >= settings.max_verification_attempts_per_application:
        await ctx.session.commit()
        logger.warning(
            "status verification for application %s refused unchecked from %s: locked today",
            application.id,
            mask(ctx.conversation.identity_id),
        )
        ctx.set_slot("verification_answer", LOCKED)
        return
    wait = failures.wait(settings.verification_delay_seconds, now)
    if wait > timedelta(0):
        await ctx.session.commit()
        logger.info(
            "status verification for application %s from %s too soon: not checked",
            application.id,
            mask(ctx.conversation.identity_id),
        )
        ctx.say(ctx._(TOO_SOON, duration=ctx.words.duration(wait)))
        ctx.set_slot("verification_answer", None)
        return
    stored = str(application.answers.get(field.name, ""))
    succeeded = _same_answer(field.type, given, stored)
    ctx.session.add(
        VerificationAttempt(
            application_id=application.id,
            identity_id=ctx.conversation.identity_id,
            succeeded=succeeded,
            created_at=now,
        )
    )
    failed = failures.count + (0 if succeeded else 1)
    alert = not succeeded and failed == settings.verification_alert_failures
    if alert:
        ctx.session.add(
            AuditEntry(
                staff_id=None,
                action=VERIFICATION_ALERT,
                conversation_id=application.conversation_id,
                detail={
                    "application_id": application.id,
                    "failures": failed,
                    "identity_id": ctx.conversation.identity_id,
                },
                created_at=now,
            )
        )
    await ctx.session.commit()  # the lock is held no longer than this
    if succeeded:
        ctx.set_slot("verification_answer", VERIFIED)
        return
    ctx.metrics.verification_failures.inc()
    if alert:
        ctx.metrics.verification_alerts.inc()
        logger.warning(
            "status verification alert: application %s had %d wrong answers today",
            application.id,
            failed,
        )
    mine = await _failed_attempts(ctx, application)
    logger.warning(
        "wrong status verification for application %s from %s (%d today, %d from it)",
        application.id,
        mask(ctx.conversation.identity_id),
        failed,
        mine,
    )
    remaining = min(
        settings.max_verification_attempts - mine,
        settings.max_verification_attempts_per_application - failed,
    )
    if remaining <= 0:
        ctx.set_slot("verification_answer", LOCKED)
        return
    reply = ctx.words.ngettext(
        "That does not match. You can try {count} more time.",
        "That does not match. You can try {count} more times.",
        remaining,
    ).format(count=remaining)
    wait = Failures(failed, now).wait(settings.verification_delay_seconds, now)
    if wait > timedelta(0):
        reply += " " + ctx._(WAIT_BEFORE_NEXT, duration=ctx.words.duration(wait))
    ctx.say(reply)
    ctx.set_slot("verification_answer", None)


@action("action_ask_reference")
async def ask_reference(ctx: ActionContext) -> None:
    """The question, with this conversation's own applications as options, latest first."""
    filed = await ctx.session.scalars(FILED_HERE, {"conversation_id": ctx.conversation.id})
    zone = ZoneInfo(ctx.settings.timezone)
    buttons = []
    for application in filed:
        reference = application.reference or application.provisional_reference
        filed_on = as_utc(application.created_at).astimezone(zone).date()
        title = ctx._(YOUR_APPLICATION, reference=reference, date=ctx.words.date(filed_on))
        buttons.append(Button(title, intent_payload("check_status", reference=reference)))
    ctx.say(ctx._(ASK_REFERENCE, example=EXAMPLE_REFERENCE), buttons)


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


async def status_aside(ctx: ActionContext) -> bool:
    """Whether the message is ``STATUS <reference>`` typed while an application is being
    filled in, answered here: that status for its applicant (or someone verified), else
    how to ask once this application is done; the prompts' example reference is named
    as one. The form's open question stays open, to be asked again."""
    reference = status_reference(ctx.text)
    if reference is None:
        words = ctx.text.split(maxsplit=1)
        if not words or fold(words[0]) not in STATUS_WORDS or not is_example_reference(ctx.text):
            return False
        ctx.say(ctx._(ONLY_AN_EXAMPLE, example=EXAMPLE_REFERENCE))
        return True
    application = await find_application(ctx, reference)
    if application is None or not await may_disclose(ctx, application):
        ctx.say(ctx._(STATUS_AFTER_FORM, reference=reference))
        return True
    await ctx.session.commit()  # only read so far: no transaction waits on the backend
    ctx.say(await status_text(application, ctx.words, ctx.catalogue, ctx.connectors))
    return True


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
