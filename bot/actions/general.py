"""Actions outside the forms: help, service information, cancel, fallback, person, language."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from sqlalchemy import delete, select

from bot.actions.context import ActionContext
from bot.actions.menus import intent_payload, main_menu, service_buttons
from bot.actions.protocol import active_loop
from bot.actions.registry import action
from bot.conversation import LANGUAGE_SET
from bot.db.models import LATEST_FIRST, ApplicationDraft, Direction, Message
from bot.i18n import N_, language_name, localizer
from channels.base import Button
from service_connectors.answers import match_option
from service_connectors.catalogue import Service

N_("Monday to Friday, 8 am to 6 pm")  # the default of CALL_CENTRE_HOURS, for translators
FORM_SLOTS = ("service", "field_answer", "confirmation", "reference", "verification_answer")


@action("action_help")
async def help_menu(ctx: ActionContext) -> None:
    ctx.say(ctx._(N_("Here is what I can do. Choose an option:")), main_menu(ctx))


@action("action_service_info")
async def service_info(ctx: ActionContext) -> None:
    service = ctx.service(next(iter(ctx.entities("service")), None))
    if service is None:
        service = _service_from_text(ctx)
    if service is None:
        ctx.say(
            ctx._(N_("Which service would you like to know about?")),
            service_buttons(ctx, "service_info"),
        )
        return
    lines = [f"{ctx._(service.name)}: {ctx._(service.description)}"]
    if service.documents:
        documents = "; ".join(ctx._(document) for document in service.documents)
        lines.append(ctx._(N_("You need: {documents}."), documents=documents))
    if service.fee:
        lines.append(
            ctx._(N_("Fee: {fee}."), fee=ctx.words.money(service.fee, ctx.catalogue.currency))
        )
    else:
        lines.append(ctx._(N_("There is no fee.")))
    lines.append(
        ctx.words.ngettext(
            "It usually takes {days} day.", "It usually takes {days} days.", service.processing_days
        ).format(days=service.processing_days)
    )
    ctx.set_slot("service", service.code)
    ctx.say(
        "\n".join(lines),
        [Button(ctx._(N_("Apply now")), intent_payload("apply_service", service=service.code))],
    )


def _service_from_text(ctx: ActionContext) -> Service | None:
    index = match_option(ctx.text, [ctx._(s.name) for s in ctx.catalogue.services])
    return ctx.catalogue.services[index] if index is not None else None


@action("action_cancel")
async def cancel(ctx: ActionContext) -> None:
    in_form = bool(ctx.call.tracker.active_loop.get("name"))
    result = await ctx.session.execute(
        delete(ApplicationDraft).where(ApplicationDraft.conversation_id == ctx.conversation.id)
    )
    for slot in FORM_SLOTS:
        ctx.set_slot(slot, None)
    ctx.emit(active_loop(None))  # always: the rules expect it after action_cancel
    if in_form or int(getattr(result, "rowcount", 0) or 0):
        ctx.say(ctx._(N_("OK, I have stopped. Nothing was sent. Reply HELP to see what I can do.")))
    else:
        ctx.say(ctx._(N_("There is nothing to cancel. Reply HELP to see what I can do.")))


def _recent_intents(ctx: ActionContext) -> Iterator[str | None]:
    """The intents of the citizen's messages, newest first."""
    for event in reversed(ctx.call.events):
        if event.event == "user":
            yield event.intent


def _consecutive_fallbacks(ctx: ActionContext) -> int:
    count = sum(1 for _ in itertools.takewhile(lambda i: i == "nlu_fallback", _recent_intents(ctx)))
    return max(count, 1)


def _handoff_reason(ctx: ActionContext) -> str:
    """ "not_understood" when the bot missed one of the two messages before, else "asked"."""
    before = list(itertools.islice(_recent_intents(ctx), 1, 3))
    return "not_understood" if "nlu_fallback" in before else "asked"


@action("action_fallback")
async def fallback(ctx: ActionContext) -> None:
    if _consecutive_fallbacks(ctx) >= 2:
        ctx.say(
            ctx._(N_("Sorry, I still do not understand. Would you like to talk to a person?")),
            [
                Button(ctx._(N_("Talk to a person")), intent_payload("talk_to_human")),
                Button(ctx._(N_("Show the menu")), intent_payload("help")),
            ],
        )
    else:
        ctx.say(
            ctx._(N_("Sorry, I did not understand that. Here is what I can do:")), main_menu(ctx)
        )


@action("action_talk_to_human")
async def talk_to_human(ctx: ActionContext) -> None:
    """Queue the conversation for a person, or offer a message or a call back when
    nobody can take it now. An open form stays open: its question is asked again when
    the agent hands the conversation back."""
    resume = None
    if ctx.call.tracker.active_loop.get("name"):
        resume = await ctx.session.scalar(
            select(Message.id)
            .where(
                Message.conversation_id == ctx.conversation.id,
                Message.direction == Direction.OUTBOUND,
            )
            .order_by(*LATEST_FIRST)
            .limit(1)
        )
    reason = _handoff_reason(ctx)
    for reply in await ctx.handoffs.request(
        ctx.session, ctx.conversation, ctx.words, reason, resume
    ):
        ctx.say(reply.text, reply.buttons)


@action("action_change_language")
async def change_language(ctx: ActionContext) -> None:
    supported = list(ctx.settings.supported_languages)
    codes = (code.casefold() for code in ctx.entities("language"))  # "RU" as typed
    wanted = next((code for code in codes if code in supported), None)
    if wanted is None:
        ctx.say(
            ctx._(N_("Which language would you like?")),
            [
                Button(language_name(code), intent_payload("change_language", language=code))
                for code in supported
            ],
        )
        return
    ctx.citizen.language = wanted
    ctx.words = localizer(wanted)
    ctx.say(ctx._(LANGUAGE_SET, language=language_name(wanted)))
