"""Replies shared by several actions: the main menu and service choices."""

from __future__ import annotations

import json

from bot.actions.context import ActionContext
from bot.i18n import N_, Localizer
from channels.base import Button

# Intents that interrupt a form instead of answering its question.
INTERRUPTING_INTENTS = frozenset({"cancel", "help", "talk_to_human"})
INTERRUPTION_CONFIDENCE = 0.6


def is_interruption(ctx: ActionContext) -> bool:
    """True when the citizen asked to cancel, for help or for a person mid-form.

    A button payload counts; typed text counts only when it is a few words, each with a
    letter: the classifier is not to be trusted on dates, numbers or references.
    """
    if ctx.intent not in INTERRUPTING_INTENTS:
        return False
    if ctx.text.startswith("/"):
        return True
    words = ctx.text.split()
    return (
        ctx.intent_confidence >= INTERRUPTION_CONFIDENCE
        and 0 < len(words) <= 8
        and all(any(ch.isalpha() for ch in word) for word in words)
    )


def intent_payload(intent: str, **entities: str) -> str:
    """A button payload Rasa reads as an intent with entities, skipping the NLU."""
    return f"/{intent}{json.dumps(entities)}" if entities else f"/{intent}"


def main_menu(ctx: ActionContext) -> list[Button]:
    return main_menu_buttons(ctx.words)


def main_menu_buttons(words: Localizer) -> list[Button]:
    """What the bot can do, as intent buttons (a numbered menu where there are none)."""
    return [
        Button(words.gettext(N_("Apply for a service")), intent_payload("apply_service")),
        Button(words.gettext(N_("Check an application")), intent_payload("check_status")),
        Button(words.gettext(N_("Service information")), intent_payload("service_info")),
        Button(words.gettext(N_("Talk to a person")), intent_payload("talk_to_human")),
    ]


def service_buttons(ctx: ActionContext, intent: str) -> list[Button]:
    return [
        Button(ctx._(service.name), intent_payload(intent, service=service.code))
        for service in ctx.catalogue.services
    ]
