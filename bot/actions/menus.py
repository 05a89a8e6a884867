"""Replies shared by several actions: the main menu and service choices."""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import yaml

from bot.actions.context import ActionContext
from bot.i18n import N_, Localizer
from channels.base import Button

# Intents that interrupt a form instead of answering its question.
INTERRUPTING_INTENTS = frozenset({"cancel", "help", "talk_to_human"})
INTERRUPTION_CONFIDENCE = 0.6
# Typed text that is a valid answer to a free-text question (a name, a place, an
# address) interrupts only far above the usual confidence, and only when every word of
# it is a word of the requests the classifier learnt (the examples of those intents in
# intents/<lang>/nlu.yml): confidence alone cannot tell "Nathalie Arrêt" (cancel, 0.985)
# from "forget it" (0.918), but "nathalie" is in no request (docs/nlu.md). Command
# words (EXIT, HELP, PERSON) come as payloads and always interrupt.
FREE_TEXT_INTERRUPTION_CONFIDENCE = 0.8
INTENTS_DIR = Path(__file__).resolve().parents[2] / "intents"
_ANNOTATION = re.compile(r"\[([^\]]*)\]\([^)]*\)")  # "[passport](service)" -> "passport"
_WORD = re.compile(r"[^\W\d_]+")


def is_interruption(ctx: ActionContext, free_text_answer: bool = False) -> bool:
    """True when the citizen asked to cancel, for help or for a person mid-form."""
    return interrupts(ctx.intent, ctx.intent_confidence, ctx.text, free_text_answer)


def interrupts(
    intent: str | None, confidence: float, text: str, free_text_answer: bool = False
) -> bool:
    """Whether a message with this intent interrupts a form instead of answering it.

    A button payload (or a command word, sent as one) counts; typed text counts only
    when it is a few words, each with a letter: the classifier is not to be trusted on
    dates, numbers or references. When the text is a valid answer to a free-text
    question (``free_text_answer``), it must also be far surer than usual and made only
    of the words requests are made of (:func:`request_words`).
    """
    if intent not in INTERRUPTING_INTENTS:
        return False
    if text.startswith("/"):
        return True
    words = text.split()
    needed = FREE_TEXT_INTERRUPTION_CONFIDENCE if free_text_answer else INTERRUPTION_CONFIDENCE
    return (
        confidence >= needed
        and 0 < len(words) <= 8
        and all(any(ch.isalpha() for ch in word) for word in words)
        and (not free_text_answer or request_words().issuperset(folded_words(text)))
    )


def folded_words(text: str) -> list[str]:
    """The words of ``text``, case and accents removed ("Arrêt" -> "arret")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WORD.findall(bare)


@lru_cache(maxsize=1)
def request_words() -> frozenset[str]:
    """Every word of the training examples of the interrupting intents, in every
    language (read once): what a typed request to stop, for help or for a person is
    made of, and a name seldom is."""
    words: set[str] = set()
    for path in sorted(INTENTS_DIR.glob("*/nlu.yml")):
        for block in yaml.safe_load(path.read_text(encoding="utf-8")).get("nlu") or []:
            if block.get("intent") in INTERRUPTING_INTENTS:
                for example in str(block.get("examples") or "").splitlines():
                    words.update(folded_words(_ANNOTATION.sub(r"\1", example)))
    return frozenset(words)


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
