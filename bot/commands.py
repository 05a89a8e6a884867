"""Command words: a message that is only EXIT, HELP or PERSON (or one of their
translations) is that request, whatever the dialogue is doing, and never an answer.

They become intent payloads before Rasa ("/cancel", "/help", "/talk_to_human"), which
Rasa takes without running the NLU: mid-form, a command word always interrupts, while
free text ("Anna Stopa", "Nathalie Arrêt") is left to the form's validation, which takes
it as the answer unless the classifier is far surer than usual (``bot.actions.menus``).
Like :func:`bot.handoff.is_person_keyword`, each keyword is a msgid translated in every
supported language, and every translation works in every language ("HELP" in French
too); a few common one-word synonyms (the one-word examples of the cancel and help
intents in ``intents/<lang>/nlu.yml``) are listed here. By SMS, STOP, CANCEL, ARRET,
СТОП and HELP are carrier keywords handled before this (``channels/sms/keywords.py``).
"""

from __future__ import annotations

from functools import lru_cache

from bot.handoff import PERSON_KEYWORD, TALK_TO_HUMAN
from bot.i18n import N_, localizer
from bot.languages import fold_keyword

CANCEL = "/cancel"
HELP = "/help"
EXIT_KEYWORD = N_("EXIT")  # typed alone: stop the application (confirmed first mid-form)
HELP_KEYWORD = N_("HELP")  # typed alone: the menu, mid-form too
MAX_COMMAND_CHARS = 32
SYNONYMS: dict[str, frozenset[str]] = {
    CANCEL: frozenset({
        "exit", "cancel", "stop", "quit", "abort",
        "annuler", "annule", "arreter", "arrete", "quitter", "sortir",
        "отмена", "отменить", "стоп", "выход", "выйти", "otmena", "vyhod",
    }),
    HELP: frozenset({"help", "menu", "aide", "помощь", "меню", "pomosh"}),
}  # fmt: skip
KEYWORDS = {CANCEL: EXIT_KEYWORD, HELP: HELP_KEYWORD, TALK_TO_HUMAN: PERSON_KEYWORD}


@lru_cache(maxsize=8)
def _words(supported: tuple[str, ...]) -> dict[str, str]:
    """Folded word → payload, for these languages (built once: every message asks)."""
    words: dict[str, str] = {}
    for payload, keyword in KEYWORDS.items():
        for word in SYNONYMS.get(payload, frozenset()) | {keyword}:
            words[fold_keyword(word)] = payload
        for code in supported:
            words[fold_keyword(localizer(code).gettext(keyword))] = payload
    return words


def command_payload(text: str, supported: tuple[str, ...]) -> str | None:
    """The intent payload a message that is only a command word stands for, else None."""
    if len(text) > MAX_COMMAND_CHARS or text.startswith("/"):
        return None
    return _words(supported).get(fold_keyword(text).rstrip(" ?"))  # "help?" too
