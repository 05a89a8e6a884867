"""Telegram text: MarkdownV2 escaping and the 4096-character message limit.

Replies are plain text; escaping every reserved character lets Telegram show them as
typed (a reference like BC-7K3Q9P, a price with a dot). Long replies are split at
paragraph, line, sentence or word boundaries so that each escaped part fits.
"""

from __future__ import annotations

import re

from telegram.constants import MessageLimit
from telegram.helpers import escape_markdown

LIMIT = int(MessageLimit.MAX_TEXT_LENGTH)
_BOUNDARIES = (re.compile(r"(?<=\n)"), re.compile(r"(?<=[.!?])\s+"), re.compile(r"(?<=\s)"))


def escape(text: str) -> str:
    return escape_markdown(text, version=2)


def split_text(text: str, limit: int = LIMIT) -> list[str]:
    """Parts of ``text`` whose escaped form fits ``limit``, split as late and as
    naturally as possible; joined they give back the text (trailing spaces aside)."""
    if len(escape(text)) <= limit:
        return [text]
    return [part for part in _split(text, limit, 0) if part.strip()]


def _split(text: str, limit: int, level: int) -> list[str]:
    if len(escape(text)) <= limit:
        return [text]
    if level == len(_BOUNDARIES):  # one word longer than a message: cut it
        cut = limit // 2  # escaping at most doubles the length
        return [text[:cut], *_split(text[cut:], limit, level)]
    parts: list[str] = []
    current = ""
    for piece in _BOUNDARIES[level].split(text):
        if len(escape(current + piece)) <= limit:
            current += piece
            continue
        if current:
            parts.append(current)
        if len(escape(piece)) <= limit:
            current = piece
        else:
            parts.extend(_split(piece, limit, level + 1))
            current = ""
    if current:
        parts.append(current)
    return parts
