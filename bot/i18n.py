"""Every citizen-facing string goes through Babel's gettext, in the citizen's language.

Strings are English msgids in code (``gettext``/``ngettext`` on a :class:`Localizer`, or
``N_`` for constants translated later) and in YAML (the catalogue, the domain's
responses; see :mod:`bot.i18n_extract`). ``make`` compiles ``locales/*/LC_MESSAGES``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from babel import Locale
from babel.dates import format_date, format_timedelta
from babel.numbers import format_currency
from babel.support import NullTranslations, Translations

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"


def N_(message: str) -> str:  # noqa: N802 - the conventional name for a deferred msgid
    """Mark ``message`` for extraction; it is translated where it is shown."""
    return message


@lru_cache(maxsize=32)
def _translations(language: str) -> NullTranslations:
    return Translations.load(str(LOCALES_DIR), [language], DOMAIN)


@dataclass(frozen=True, slots=True)
class Localizer:
    """Translation and formatting for one citizen language."""

    language: str

    @property
    def locale(self) -> Locale:
        return Locale.parse(self.language)

    def gettext(self, message: str) -> str:
        return _translations(self.language).gettext(message)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        return _translations(self.language).ngettext(singular, plural, count)

    def date(self, value: date) -> str:
        return format_date(value, format="long", locale=self.language)

    def money(self, amount: Decimal, currency: str) -> str:
        return format_currency(amount, currency, locale=self.language)

    def duration(self, value: timedelta) -> str:
        """ "30 seconds", "2 minutes", "1 hour": rounded up, never less than ``value``."""
        seconds = max(1, math.ceil(value.total_seconds()))
        if seconds > 60:
            seconds = math.ceil(seconds / 60) * 60
        if seconds > 3600:
            seconds = math.ceil(seconds / 3600) * 3600
        return format_timedelta(
            timedelta(seconds=seconds), threshold=1, format="long", locale=self.language
        )


def language_name(code: str) -> str:
    """ "français", "русский": a language named in itself, for menus and confirmations."""
    return Locale.parse(code).get_display_name(code) or code


def localizer(language: str | None, default: str = "en") -> Localizer:
    return Localizer(language or default)
