"""Which language a citizen writes in: keywords that switch it, and a detector for the
first message.

The detector (lingua, restricted to the supported languages) only decides when the text
says enough: Cyrillic script, or enough letters and a clear margin. "hi", "ok" or "1"
never set a language; a citizen stays unset until a message is clear or they choose.
It reads the first :data:`DETECT_CHARS` characters only: lingua's time grows steeply with
the length of a word, and a message's first words say its language as well as the rest.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from babel import Locale
from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

# A message that is only one of these words switches the language, at any time. Every
# supported language also answers to its code and its name in English and in itself
# (from Babel), so a new language needs no entry here.
KEYWORDS: dict[str, frozenset[str]] = {
    "en": frozenset({"en", "eng", "english", "anglais", "английский", "angliyskiy"}),
    "fr": frozenset({"fr", "francais", "french", "французский", "en francais"}),
    "ru": frozenset({"ru", "rus", "russian", "russe", "русский", "по-русски", "по русски",
                     "russkiy", "russkij", "po russki", "po-russki"}),
}  # fmt: skip
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
MAX_KEYWORD_CHARS = 32
MIN_LETTERS = 4
SURE = 0.9  # confidence needed for a short text
SURE_LONG = 0.7  # enough for three words or more
DETECT_CHARS = 200  # what detection reads of a message (about 30 words)


def fold_keyword(text: str) -> str:
    """Case, accents and trailing punctuation removed: how keywords are compared."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().strip())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip(" .!")


def language_keyword(text: str, supported: tuple[str, ...]) -> str | None:
    """The language a message like "FR", "français" or "русский" asks for."""
    if len(text) > MAX_KEYWORD_CHARS:  # a sentence, not a keyword: no folding needed
        return None
    folded = fold_keyword(text)
    for code in supported:
        if folded in _keywords(code):
            return code
    return None


@lru_cache(maxsize=16)
def _keywords(code: str) -> frozenset[str]:
    """The words that choose ``code``, folded once (this runs on every message)."""
    locale = Locale.parse(code)
    names = {code, locale.get_display_name("en") or code, locale.get_display_name(code) or code}
    return frozenset(fold_keyword(word) for word in KEYWORDS.get(code, frozenset()) | names)


@lru_cache(maxsize=4)
def _detector(supported: tuple[str, ...]) -> LanguageDetector:
    """Only the supported languages: a fourth one needs no code here."""
    languages = [Language.from_iso_code_639_1(IsoCode639_1.from_str(code)) for code in supported]
    return LanguageDetectorBuilder.from_languages(*languages).build()


def sample(text: str) -> str:
    """The start of ``text`` that detection reads: :data:`DETECT_CHARS` at most, cut
    after a whole word when there is one."""
    if len(text) <= DETECT_CHARS:
        return text
    head = text[:DETECT_CHARS]
    cut = max(head.rfind(" "), head.rfind("\n"))
    return head[:cut] if cut > DETECT_CHARS // 2 else head


def detect(text: str, supported: tuple[str, ...]) -> str | None:
    """The language of ``text`` (its :func:`sample`) when it is clear, else None."""
    text = sample(text)
    letters = _LETTER.findall(text)
    if len(letters) < MIN_LETTERS or len(supported) < 2:
        return None
    cyrillic = sum(1 for letter in letters if _CYRILLIC.match(letter))
    if "ru" in supported and cyrillic * 2 > len(letters):
        return "ru"
    best = _detector(supported).compute_language_confidence_values(text)[0]
    code = best.language.iso_code_639_1.name.lower()
    needed = SURE_LONG if len(text.split()) >= 3 else SURE
    return code if code in supported and best.value >= needed else None
