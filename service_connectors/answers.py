"""Checks a citizen's typed answer against a catalogue field and normalises it.

Problems are English msgids (marked with ``N_``), translated where they are shown. Values
are stored normalised (dates as ISO 8601, choices as their code) but names and free text
stay exactly as typed, apart from surrounding whitespace.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from dateutil import parser as date_parser
from rapidfuzz import fuzz, process

from bot.i18n import N_
from service_connectors.catalogue import FieldType, ServiceField

EARLIEST_DATE = date(1900, 1, 1)
_NUMERIC_DATE = re.compile(r"^\s*(\d{1,4})\s*[/.\-\s]\s*(\d{1,2})\s*[/.\-\s]\s*(\d{1,4})\s*$")
_NAME_CHARACTERS = re.compile(r"^[^\W\d_]+(?:[\s.'’\-][^\W\d_]*)*$")
# Month names as citizens type them in every supported language (French and Russian,
# Russian in the genitive too: "21 марта 2019"), and the words around a date to skip
# ("le 1er mars", "21 марта 2019 г."). A new language adds its months here.
_MONTHS: list[Any] = [
    ("jan", "january", "janv", "janvier", "янв", "январь", "января"),
    ("feb", "february", "fev", "fevr", "février", "fevrier", "févr", "фев", "февр", "февраль",
     "февраля"),
    ("mar", "march", "mars", "мар", "март", "марта"),
    ("apr", "april", "avr", "avril", "апр", "апрель", "апреля"),
    ("may", "mai", "май", "мая"),
    ("jun", "june", "juin", "июн", "июнь", "июня"),
    ("jul", "july", "juil", "juillet", "июл", "июль", "июля"),
    ("aug", "august", "août", "aout", "авг", "август", "августа"),
    ("sep", "sept", "september", "septembre", "сен", "сент", "сентябрь", "сентября"),
    ("oct", "october", "octobre", "окт", "октябрь", "октября"),
    ("nov", "november", "novembre", "ноя", "нояб", "ноябрь", "ноября"),
    ("dec", "december", "déc", "décembre", "decembre", "дек", "декабрь", "декабря"),
]  # fmt: skip
_SKIPPED = ["le", "er", "du", "г", "года", "год"]


class _DateWords(date_parser.parserinfo):
    def __init__(self) -> None:
        self.MONTHS = _MONTHS  # read by parserinfo.__init__
        self.JUMP = [*date_parser.parserinfo.JUMP, *_SKIPPED]
        super().__init__(dayfirst=True)


_DATE_WORDS = _DateWords()


@dataclass(frozen=True, slots=True)
class AnswerCheck:
    value: str | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def check_answer(field: ServiceField, text: str, today: date) -> AnswerCheck:
    answer = " ".join(text.split())
    if not answer:
        return AnswerCheck(problem=N_("I did not get an answer."))
    match field.type:
        case FieldType.DATE:
            return _check_date(field, answer, today)
        case FieldType.NAME:
            return _check_name(field, answer)
        case FieldType.NUMBER:
            return _check_number(field, answer)
        case FieldType.CHOICE:
            return _check_choice(field, answer)
        case FieldType.TEXT:
            return _check_text(field, answer)


def _check_text(field: ServiceField, answer: str) -> AnswerCheck:
    if len(answer) < field.min_length:
        return AnswerCheck(problem=N_("That answer is too short."))
    if len(answer) > field.max_length:
        return AnswerCheck(problem=N_("That answer is too long."))
    if not any(ch.isalnum() for ch in answer):
        return AnswerCheck(problem=N_("I could not read that answer."))
    return AnswerCheck(value=answer)


def _check_name(field: ServiceField, answer: str) -> AnswerCheck:
    if len(answer) > field.max_length:
        return AnswerCheck(problem=N_("That name is too long."))
    letters = sum(ch.isalpha() for ch in answer)
    # Vowel signs and other combining marks belong to the letter before them (Devanagari
    # "प्रिया", Tamil, Arabic with its vowels): a name of those scripts is letters too.
    bare = "".join(ch for ch in answer if not unicodedata.category(ch).startswith("M"))
    if letters < 2 or not _NAME_CHARACTERS.match(bare):
        return AnswerCheck(problem=N_("A name should only have letters."))
    return AnswerCheck(value=answer)


def _check_number(field: ServiceField, answer: str) -> AnswerCheck:
    digits = answer.strip().rstrip(".")
    if not digits.isdigit():
        return AnswerCheck(problem=N_("Please answer with a number."))
    number = int(digits)
    if (field.min_value is not None and number < field.min_value) or (
        field.max_value is not None and number > field.max_value
    ):
        return AnswerCheck(problem=N_("That number is out of range."))
    return AnswerCheck(value=str(number))


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).strip(" .!")


def match_option(answer: str, options: list[str]) -> int | None:
    """Index of the option ``answer`` picks: by its number (1-based), or by its words."""
    folded = _fold(answer)
    if folded.isdigit():
        index = int(folded) - 1
        return index if 0 <= index < len(options) else None
    folded_options = [_fold(option) for option in options]
    if folded in folded_options:
        return folded_options.index(folded)
    best = process.extractOne(folded, folded_options, scorer=fuzz.WRatio, score_cutoff=85)
    return int(best[2]) if best is not None else None


def _check_choice(field: ServiceField, answer: str) -> AnswerCheck:
    labels = [choice.label for choice in field.choices]
    values = [choice.value.replace("_", " ") for choice in field.choices]
    index = match_option(answer, labels)
    if index is None:
        index = match_option(answer, values)
    if index is None:
        return AnswerCheck(problem=N_("Please choose one of the options."))
    return AnswerCheck(value=field.choices[index].value)


def _check_date(field: ServiceField, answer: str, today: date) -> AnswerCheck:
    parsed = parse_date(answer, today, prefer_past=field.not_future)
    if parsed is None:
        return AnswerCheck(problem=N_("I could not read that date."))
    if field.not_future and parsed > today:
        return AnswerCheck(problem=N_("That date is in the future."))
    if parsed < EARLIEST_DATE:
        return AnswerCheck(problem=N_("That date is too long ago."))
    return AnswerCheck(value=parsed.isoformat())


def parse_date(answer: str, today: date, prefer_past: bool = True) -> date | None:
    """Day-first numeric dates (21/03/2019, 21.3.19, 2019-03-21) or dates with month names.

    A two-digit year is put in the century that keeps the date in the past when
    ``prefer_past``, so "05/11/80" is 1980.
    """
    numeric = _NUMERIC_DATE.match(answer)
    if numeric:
        first, second, third = (int(part) for part in numeric.groups())
        if len(numeric.group(1)) == 4:
            year, month, day = first, second, third
        else:
            day, month, year = first, second, third
            if len(numeric.group(3)) <= 2:
                year = _expand_year(year, today, prefer_past)
        try:
            return date(year, month, day)
        except ValueError:
            return None
    return _parse_worded_date(answer, today, prefer_past)


def _expand_year(two_digits: int, today: date, prefer_past: bool) -> int:
    year = 2000 + two_digits
    if prefer_past and year > today.year:
        year -= 100
    return year


def _parse_worded_date(answer: str, today: date, prefer_past: bool) -> date | None:
    """Dates like "21 march 2019", "1er mars 2019", "21 марта 2019 г."; refused when the
    day, month or year is missing."""
    if not any(ch.isalpha() for ch in answer) or not any(ch.isdigit() for ch in answer):
        return None
    results: list[datetime] = []
    for default in (datetime(2001, 1, 1), datetime(2002, 2, 2)):
        try:
            results.append(date_parser.parse(answer, _DATE_WORDS, default=default))
        except (ValueError, OverflowError):
            return None
    if results[0] != results[1]:
        return None
    parsed = results[0].date()
    year_digits = re.findall(r"\d+", answer)
    if (
        year_digits
        and len(year_digits[-1]) <= 2
        and str(parsed.year)[-2:] == year_digits[-1].zfill(2)
    ):
        parsed = parsed.replace(year=_expand_year(parsed.year % 100, today, prefer_past))
    return parsed
