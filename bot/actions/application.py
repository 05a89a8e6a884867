"""The catalogue-driven application form: one Rasa form for every service.

Rasa's ``application_form`` requires three slots — ``service``, ``field_answer`` and
``confirmation`` — all filled here. ``field_answer`` stays empty until every catalogue
field of the service has a valid answer in the conversation's draft, so Rasa keeps
asking (``action_ask_field_answer``) and the catalogue alone decides the questions.
"""

from __future__ import annotations

from datetime import date

from bot.actions.context import ActionContext, load_draft
from bot.actions.menus import intent_payload, interrupts, is_interruption, service_buttons
from bot.actions.registry import action
from bot.actions.status import status_aside
from bot.db.models import ApplicationDraft
from bot.handoff import ASK_PERSON_HINT, PERSON_KEYWORD
from bot.i18n import N_
from channels.base import Button
from service_connectors.answers import check_answer, match_option
from service_connectors.catalogue import FieldType, Service, ServiceField

COMPLETE = "complete"
PERSON_AFTER_FAILURES = 2  # refused answers to one question before a person is offered
CHOOSING_FIELD = "*"  # draft.editing_field while the citizen picks a detail to change
FREE_TEXT = frozenset({FieldType.NAME, FieldType.TEXT})  # answers the classifier misreads
# The intents of the rules that run the form again (bot/data/rules.yml: help while
# applying, a No to "Stop this application?"): only then are the tracker's events read
# (tens of kB).
RESUMING_INTENTS = frozenset({"deny", "help"})


def current_field(service: Service, draft: ApplicationDraft) -> ServiceField | None:
    if draft.editing_field and draft.editing_field != CHOOSING_FIELD:
        return service.field(draft.editing_field)
    return service.next_missing_field(draft.answers)


def display_value(ctx: ActionContext, field: ServiceField, value: str) -> str:
    if field.type is FieldType.DATE:
        return ctx.words.date(date.fromisoformat(value))
    if field.type is FieldType.CHOICE:
        label = next((c.label for c in field.choices if c.value == value), value)
        return ctx._(label)
    return value


@action("validate_application_form")
async def validate_application_form(ctx: ActionContext) -> None:
    if _resuming(ctx):
        return  # no answer to validate: Rasa asks the open question again
    requested = ctx.requested_slot
    if requested is not None and await status_aside(ctx):  # "STATUS BC-…": not an answer
        ctx.set_slot(requested, None)  # the form asks its open question again
        return
    draft = await load_draft(ctx)
    if _interrupted(ctx, draft, requested):
        return  # nothing validated: Rasa rejects the form and the rules take over
    if requested in (None, "service"):
        await _choose_service(ctx, draft, asked=requested == "service")
    elif draft is None or ctx.service(draft.service_code) is None:
        ctx.set_slot("service", None)  # the draft is gone: start again from the service
    elif requested == "field_answer":
        _take_field_answer(ctx, draft)
    elif requested == "confirmation":
        _take_confirmation(ctx, draft)


def _resuming(ctx: ActionContext) -> bool:
    """Whether Rasa runs the form again after a rule ("help while applying", a No to
    "Stop this application?") rather than after an answer, so that the rule's message
    (HELP, No) is never taken as the answer: since the citizen's message, another
    action ran or Rasa marked the form as coming back from an unhappy path. (Rasa runs
    the validation with a form action of its own appended, so the tracker's latest
    action and loop state say nothing here.)"""
    if ctx.intent not in RESUMING_INTENTS:
        return False
    for event in reversed(ctx.call.events):
        if event.event == "user":
            return False
        if event.event == "loop_interrupted" and event.is_interrupted:
            return True
        if event.event == "action" and event.name not in ("application_form", "action_listen"):
            return True
    return False


def _interrupted(ctx: ActionContext, draft: ApplicationDraft | None, requested: str | None) -> bool:
    """Whether the message asks to cancel, for help or for a person instead of answering."""
    service = ctx.service(draft.service_code) if draft else None
    field = current_field(service, draft) if service and draft else None
    if requested == "field_answer" and field is not None:
        return not takes_answer(field, ctx.text, ctx.intent, ctx.intent_confidence, ctx.today)
    if requested == "confirmation" and ctx.text.strip().isdigit():
        return False  # a choice of the menu, whatever the classifier says
    return is_interruption(ctx)


def takes_answer(
    field: ServiceField, text: str, intent: str | None, confidence: float, today: date
) -> bool:
    """Whether ``text``, typed while ``field`` is asked, is taken as its answer.

    A valid date, number or menu choice is an answer, whatever the classifier says. A
    valid free-text answer (a name, a place, an address) is one unless the classifier
    is far surer than usual that it asks to cancel, for help or for a person; a command
    word (EXIT, HELP, PERSON: the gateway sends it as a payload) is never one. An invalid
    answer is one unless it reads as such a request: validation then says what is wrong.
    """
    valid = not text.startswith("/") and check_answer(field, text, today).ok
    if valid and field.type not in FREE_TEXT:
        return True
    return not interrupts(intent, confidence, text, free_text_answer=valid)


async def _choose_service(ctx: ActionContext, draft: ApplicationDraft | None, asked: bool) -> None:
    code = next(iter(ctx.entities("service")), None) or ctx.slot("service")
    service = ctx.service(code)
    if service is None and asked:
        index = match_option(ctx.text, [ctx._(s.name) for s in ctx.catalogue.services])
        service = ctx.catalogue.services[index] if index is not None else None
        if service is None:
            ctx.say(ctx._(N_("Sorry, I do not know that service.")))
            ctx.set_slot("service", None)
            return
    if service is None:
        return
    if draft is not None and draft.service_code == service.code and draft.answers:
        ctx.say(
            ctx._(N_("Let's continue your {service} application."), service=ctx._(service.name))
        )
    else:
        if draft is not None:
            await ctx.session.delete(draft)
            await ctx.session.flush()
        draft = ApplicationDraft(
            conversation_id=ctx.conversation.id, service_code=service.code, answers={}
        )
        ctx.session.add(draft)
        count = len(service.fields)
        ctx.say(
            ctx.words.ngettext(
                "Let's apply for: {service}. I will ask {count} question."
                " Reply EXIT at any time to stop.",
                "Let's apply for: {service}. I will ask {count} questions."
                " Reply EXIT at any time to stop.",
                count,
            ).format(service=ctx._(service.name), count=count)
        )
    ctx.set_slot("service", service.code)
    ctx.set_slot("field_answer", None if current_field(service, draft) else COMPLETE)
    ctx.set_slot("confirmation", None)


def _take_field_answer(ctx: ActionContext, draft: ApplicationDraft) -> None:
    service = ctx.service(draft.service_code)
    assert service is not None
    field = current_field(service, draft)
    if field is None:
        ctx.set_slot("field_answer", COMPLETE)
        return
    check = check_answer(field, ctx.text, ctx.today)
    if check.value is None:
        draft.failed_attempts += 1
        problem = ctx.words.gettext(check.problem) if check.problem else ""
        hint = f"{problem} {ctx._(field.hint)}".strip()
        if draft.failed_attempts >= PERSON_AFTER_FAILURES:  # offer a person, by keyword
            hint += " " + ctx._(ASK_PERSON_HINT, keyword=ctx._(PERSON_KEYWORD))
        ctx.say(hint)
        ctx.set_slot("field_answer", None)
        return
    draft.answers = {**draft.answers, field.name: check.value}
    draft.editing_field = None
    draft.failed_attempts = 0
    ctx.set_slot("field_answer", None if current_field(service, draft) else COMPLETE)


def _take_confirmation(ctx: ActionContext, draft: ApplicationDraft) -> None:
    service = ctx.service(draft.service_code)
    assert service is not None
    if draft.editing_field == CHOOSING_FIELD:
        index = match_option(ctx.text, [ctx._(field.label) for field in service.fields])
        if index is None:
            ctx.say(ctx._(N_("Please choose one of the options.")))
        else:
            field = service.fields[index]
            draft.answers = {k: v for k, v in draft.answers.items() if k != field.name}
            draft.editing_field = field.name
            ctx.set_slot("field_answer", None)
        ctx.set_slot("confirmation", None)
        return
    choice = match_option(ctx.text, [ctx._(N_("Yes, send it")), ctx._(N_("Change something"))])
    if choice == 0 or (choice is None and ctx.intent == "affirm"):
        ctx.set_slot("confirmation", "yes")
    elif choice == 1 or ctx.intent == "deny":
        draft.editing_field = CHOOSING_FIELD
        ctx.set_slot("confirmation", None)
    else:
        ctx.say(ctx._(N_("Please reply 1 to send it, or 2 to change something.")))
        ctx.set_slot("confirmation", None)


@action("action_ask_service")
async def ask_service(ctx: ActionContext) -> None:
    ctx.say(
        ctx._(N_("Which service would you like to apply for?")),
        service_buttons(ctx, "apply_service"),
    )


@action("action_ask_field_answer")
async def ask_field_answer(ctx: ActionContext) -> None:
    draft = await load_draft(ctx)
    service = ctx.service(draft.service_code) if draft else None
    field = current_field(service, draft) if service and draft else None
    if service is None or draft is None or field is None:
        await ask_service(ctx)
        return
    number = [f.name for f in service.fields].index(field.name) + 1
    progress = ctx._(N_("({number} of {total})"), number=number, total=len(service.fields))
    buttons = [Button(ctx._(c.label), str(i)) for i, c in enumerate(field.choices, start=1)]
    ctx.say(f"{ctx._(field.prompt)} {progress}", buttons)


@action("action_ask_confirmation")
async def ask_confirmation(ctx: ActionContext) -> None:
    draft = await load_draft(ctx)
    service = ctx.service(draft.service_code) if draft else None
    if service is None or draft is None:
        await ask_service(ctx)
        return
    if draft.editing_field == CHOOSING_FIELD:
        ctx.say(
            ctx._(N_("Which detail would you like to change?")),
            [Button(ctx._(f.label), str(i)) for i, f in enumerate(service.fields, start=1)],
        )
        return
    lines = [ctx._(N_("Please check your application for: {service}"), service=ctx._(service.name))]
    for field in service.fields:
        if field.name in draft.answers:
            value = display_value(ctx, field, str(draft.answers[field.name]))
            lines.append(f"- {ctx._(field.label)}: {value}")
    lines.append(ctx._(N_("Is everything correct?")))
    ctx.say(
        "\n".join(lines),
        [Button(ctx._(N_("Yes, send it")), "1"), Button(ctx._(N_("Change something")), "2")],
    )


@action("action_confirm_stop")
async def confirm_stop(ctx: ActionContext) -> None:
    """A request to cancel mid-application is confirmed first (bot/data/rules.yml): Yes
    stops (``action_cancel``), No asks the open question again with the answers given so
    far kept. The form stays rejected meanwhile, so Rasa's rules, not the form's
    validation, read the answer to this question."""
    ctx.say(
        ctx._(N_("Stop this application?")),
        [
            Button(ctx._(N_("Yes")), intent_payload("affirm")),
            Button(ctx._(N_("No")), intent_payload("deny")),
        ],
    )
