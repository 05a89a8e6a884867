"""Server-rendered console pages (Jinja2, autoescaped; strings through Babel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from bot.i18n import localizer

TEMPLATE_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
CONSOLE_LANGUAGE = "en"  # staff pages; the catalogs translate them like any other text

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
    autoescape=True,
    extensions=["jinja2.ext.i18n"],
)
_words = localizer(CONSOLE_LANGUAGE)
_environment.install_gettext_callables(  # type: ignore[attr-defined]
    _words.gettext, _words.ngettext, newstyle=True
)


def render(name: str, **context: Any) -> str:
    return _environment.get_template(name).render(language=CONSOLE_LANGUAGE, **context)
