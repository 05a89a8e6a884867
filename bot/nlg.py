"""Renders the domain's ``utter_*`` responses in the citizen's language (Rasa NLG server).

The English texts in ``bot/domain.yml`` are the msgids; the gateway translates them, so
Rasa stays language-agnostic and one domain serves every language.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.i18n import Localizer

Responses = dict[str, list[dict[str, Any]]]


def load_responses(domain_path: Path) -> Responses:
    with domain_path.open(encoding="utf-8") as stream:
        domain = yaml.safe_load(stream) or {}
    return dict(domain.get("responses") or {})


def render_response(responses: Responses, name: str, words: Localizer) -> dict[str, Any] | None:
    variations = responses.get(name)
    if not variations:
        return None
    chosen = variations[0]
    rendered: dict[str, Any] = {"text": words.gettext(str(chosen.get("text", "")))}
    if chosen.get("buttons"):
        rendered["buttons"] = [
            {"title": words.gettext(str(b["title"])), "payload": b["payload"]}
            for b in chosen["buttons"]
        ]
    return rendered
