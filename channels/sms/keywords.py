"""Compliance and fast-path keywords of SMS, recognised before any NLU.

Carriers and Twilio expect STOP / START / HELP to work whatever the bot is doing, so they
are matched here, on the whole message, case- and accent-insensitively ("Arrêt", "СТОП").
A keyword inside a sentence ("please stop asking") is not a keyword: it goes to the NLU.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass

from service_connectors.catalogue import find_reference


class Keyword(enum.Enum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    MORE = "more"


# Twilio's standard opt-out / opt-in / help words, plus French and Russian ones.
KEYWORDS: dict[str, Keyword] = {
    **dict.fromkeys(
        ("stop", "stopall", "unsubscribe", "cancel", "end", "quit", "arret", "стоп"),
        Keyword.OPT_OUT,
    ),
    **dict.fromkeys(("start", "unstop", "yes"), Keyword.OPT_IN),
    **dict.fromkeys(("help", "info", "aide", "помощь"), Keyword.HELP),
    **dict.fromkeys(("more", "plus", "suite", "еще", "дальше"), Keyword.MORE),
}
# "yes" re-subscribes only someone who opted out; otherwise it is an ordinary answer.
OPT_IN_ONLY_WHEN_OPTED_OUT = frozenset({"yes"})
STATUS_WORDS = frozenset({"status", "statut", "статус"})
_PUNCTUATION = ".!?,;:"
# A keyword is a word or two with some punctuation: a longer message is not one, and is
# not folded (NFKD over a whole long message costs time on the event loop for nothing).
MAX_KEYWORD_CHARS = 32
MAX_STATUS_CHARS = 64  # "STATUS" and a reference, with room for spaces


def fold(text: str) -> str:
    """Lower case without accents or surrounding punctuation: "Arrêt!" → "arret"."""
    decomposed = unicodedata.normalize("NFKD", text.strip())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    # Trailing punctuation and spaces off in linear time: a regex anchored at the end
    # would try again from every position of a long run of them.
    end = len(bare)
    while end and (bare[end - 1].isspace() or bare[end - 1] in _PUNCTUATION):
        end -= 1
    return bare[:end]


@dataclass(frozen=True, slots=True)
class Recognised:
    keyword: Keyword
    word: str  # the folded word, recorded with consent changes


def recognise(text: str, opted_out: bool) -> Recognised | None:
    """The keyword the whole message is, if any."""
    if len(text.strip()) > MAX_KEYWORD_CHARS:
        return None
    word = fold(text)
    keyword = KEYWORDS.get(word)
    if keyword is None:
        return None
    if word in OPT_IN_ONLY_WHEN_OPTED_OUT and not opted_out:
        return None
    return Recognised(keyword, word)


def status_reference(text: str) -> str | None:
    """``STATUS BC-7K3Q9P`` (any case, any of the supported languages) → the reference."""
    if len(text.strip()) > MAX_STATUS_CHARS:
        return None
    parts = text.strip().split(maxsplit=1)
    if len(parts) != 2 or fold(parts[0]) not in STATUS_WORDS:
        return None
    return find_reference(parts[1])
