"""Server-rendered console pages (Jinja2, autoescaped; strings through Babel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi.responses import HTMLResponse

from bot.console.desk import OUTCOMES, ROLE_LABELS
from bot.i18n import localizer

TEMPLATE_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
CONSOLE_LANGUAGE = "en"  # staff pages; the catalogs translate them like any other text

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
    autoescape=True,
    extensions=["jinja2.ext.i18n"],
)
CONSOLE_WORDS = localizer(CONSOLE_LANGUAGE)
_environment.install_gettext_callables(  # type: ignore[attr-defined]
    CONSOLE_WORDS.gettext, CONSOLE_WORDS.ngettext, newstyle=True
)


def render(name: str, **context: Any) -> str:
    return _environment.get_template(name).render(
        language=CONSOLE_LANGUAGE, outcomes=OUTCOMES, roles=ROLE_LABELS, **context
    )


# Console pages run only their own script and are never framed (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A rendered console page with the headers every console page carries."""
    return HTMLResponse(render(name, **context), status_code, headers=SECURITY_HEADERS)
