"""Turn a bot's reply turn into SMS text that is cheap and readable on a basic phone.

Operators bill per segment, and one character outside GSM-7 (a curly quote pasted from a
word processor) switches the whole message to UCS-2 and cuts a segment from 160 to 70
units. So replies are normalised to GSM-7 where that changes no meaning, segments are
counted exactly (3GPP TS 23.038 / 23.040), and long replies are paged at sentence
boundaries within a segment budget, ending each page but the last with a "MORE" prompt.
Pure functions, stdlib only: the channel adapter does the sending.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # annotations only: keeps this module free of the web stack at runtime
    from channels.base import Button

Encoding = Literal["GSM-7", "UCS-2"]

# The GSM 03.38 default alphabet in table order, without 0x1B (the escape to the extension).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each character is sent as ESC + code, so it costs two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_LIMIT: dict[Encoding, int] = {"GSM-7": 160, "UCS-2": 70}
# Concatenated messages lose 6 octets per segment to the user data header.
PART_LIMIT: dict[Encoding, int] = {"GSM-7": 153, "UCS-2": 67}

_SPACE_SEPARATORS = (  # Unicode category Zs, except U+0020 itself
    "\u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u202f\u205f\u3000"
)
_REPLACEMENTS: dict[str, str] = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),
    **dict.fromkeys("\u2012\u2013\u2014\u2015\u2212", "-"),
    "\u2026": "...",
    **dict.fromkeys("\u200b\u200c\u200d\ufeff\u00ad", ""),
    "\u2022": "-",
    "\u00b7": ".",
    "\t": " ",
    **dict.fromkeys(_SPACE_SEPARATORS, " "),
}
_TO_GSM7 = str.maketrans(_REPLACEMENTS)

# A sentence ends after . ! ? followed by whitespace, or at a line break; the separator
# (whitespace) is captured so that a page keeps the original spacing and paragraphs.
_SENTENCE_BREAK = re.compile(r"((?<=[.!?])\s+|\s*\n\s*)")
_WORD_BREAK = re.compile(r"(\s+)")

_Atom = tuple[str, str]  # a piece of text and the whitespace that follows it


@dataclass(frozen=True)
class SegmentCount:
    encoding: Encoding
    units: int  # GSM-7 septets or UCS-2 16-bit code units
    segments: int
    per_segment: int  # capacity of each segment: the single-message or the concatenated limit


def encoding_of(text: str) -> Encoding:
    """GSM-7 only if every character is in the basic or the extension table."""
    return "GSM-7" if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else "UCS-2"


def _unit_sizes(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]  # outside the BMP: a surrogate pair


def code_units(text: str) -> int:
    """Length as sent: septets for GSM-7 text, 16-bit units for UCS-2 text."""
    return sum(_unit_sizes(text, encoding_of(text)))


def septets(text: str) -> int:
    """GSM-7 septets (extension characters count 2); ValueError if the text is not GSM-7."""
    if encoding_of(text) != "GSM-7":
        raise ValueError("text is not GSM-7")
    return code_units(text)


def split_into_segments(text: str) -> list[str]:
    """The segments a phone sends, filled greedily.

    An ESC + character pair or a surrogate pair is never split across two segments, so the
    count can exceed ``ceil(units / per_segment)``: division would undercount.
    """
    encoding = encoding_of(text)
    sizes = _unit_sizes(text, encoding)
    if sum(sizes) <= SINGLE_LIMIT[encoding]:
        return [text] if text else []
    limit = PART_LIMIT[encoding]
    segments: list[str] = []
    start, used = 0, 0
    for index, size in enumerate(sizes):
        if used + size > limit:
            segments.append(text[start:index])
            start, used = index, 0
        used += size
    segments.append(text[start:])
    return segments


def count_segments(text: str) -> SegmentCount:
    """Exact segment count; empty text is 0 segments (nothing is sent)."""
    encoding = encoding_of(text)
    units = sum(_unit_sizes(text, encoding))
    single = units <= SINGLE_LIMIT[encoding]
    per_segment = SINGLE_LIMIT[encoding] if single else PART_LIMIT[encoding]
    return SegmentCount(encoding, units, len(split_into_segments(text)), per_segment)


def to_gsm7(text: str) -> str:
    """Replace typographic punctuation and odd spaces by their GSM-7 equivalents.

    Letters are never touched (no accent stripping, no transliteration), so names and
    references survive; text with e.g. Cyrillic stays UCS-2, which is correct.
    """
    return text.translate(_TO_GSM7)


def minimum_segments(text: str) -> int:
    """The fewest segments this text can cost without changing its meaning."""
    return count_segments(to_gsm7(text)).segments


def numbered_menu_lines(
    buttons: Sequence[Button], option_line: Callable[[int, str], str]
) -> list[str]:
    """One "Reply 1 for …" line per button, numbered from 1, in the caller's language."""
    return [option_line(number, button.title) for number, button in enumerate(buttons, 1)]


def _fits(text: str, budget: int) -> bool:
    return count_segments(text).segments <= budget


def _atoms(text: str, pattern: re.Pattern[str], last_separator: str) -> list[_Atom]:
    parts = pattern.split(text)
    separators = [*parts[1::2], last_separator]
    return list(zip(parts[0::2], separators, strict=True))


def _finer(atom: _Atom) -> list[_Atom] | None:
    """A sentence into words; a word into characters (code points, so never half a pair)."""
    text, separator = atom
    if _WORD_BREAK.search(text):
        return _atoms(text, _WORD_BREAK, separator)
    if len(text) > 1:
        return [(c, "") for c in text[:-1]] + [(text[-1], separator)]
    return None


def _join(atoms: deque[_Atom]) -> str:
    return "".join(text + separator for text, separator in atoms)


def _fill_page(queue: deque[_Atom], budget: int, suffix: str) -> str:
    """Take atoms off ``queue`` while the page plus ``suffix`` fits; split only what must be."""
    page, gap = "", ""
    while queue:
        text, separator = queue[0]
        if _fits(page + gap + text + suffix, budget):
            page, gap = page + gap + text, separator
            queue.popleft()
        elif page and (_fits(text + suffix, budget) or _fits(_join(queue), budget)):
            break  # it fits on the next page whole: do not cut it
        elif (finer := _finer(queue[0])) is not None:
            queue.popleft()
            queue.extendleft(reversed(finer))
        elif page:
            break
        else:
            raise ValueError("more_prompt leaves no room for text within budget_segments")
    return page


def compose(texts: Sequence[str], budget_segments: int, more_prompt: str) -> list[str]:
    """The SMS pages of one reply turn, each within ``budget_segments`` segments.

    One concatenated message when it fits; otherwise pages split at sentence boundaries
    (words, then characters, only when a piece cannot fit a page alone), every page but
    the last ending with ``more_prompt`` on its own line. Each page is counted on its own,
    so a Latin page stays GSM-7 even when another page needs UCS-2.
    """
    if budget_segments < 1:
        raise ValueError("budget_segments must be at least 1")
    joined = "\n".join(to_gsm7(text) for text in texts)
    if _fits(joined, budget_segments):
        return [joined]
    suffix = "\n" + to_gsm7(more_prompt)
    queue = deque(_atoms(joined.strip(), _SENTENCE_BREAK, ""))
    pages: list[str] = []
    while queue:
        rest = _join(queue)
        if _fits(rest, budget_segments):
            pages.append(rest)
            break
        pages.append(_fill_page(queue, budget_segments, suffix) + suffix)
    return pages
