"""The Babel catalogs are in step with the sources (``make messages`` regenerates them)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

from bot.settings import PROJECT_ROOT


def msgids(path: Path) -> set[str]:
    with path.open("rb") as stream:
        return {str(message.id) for message in read_po(stream) if message.id}


def test_messages_pot_matches_the_sources(tmp_path: Path) -> None:
    extracted = tmp_path / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg",
         "-k", "N_", "--no-location", "--omit-header", "-o", str(extracted), "."],
        cwd=PROJECT_ROOT, check=True, capture_output=True,
    )  # fmt: skip
    committed = msgids(PROJECT_ROOT / "locales" / "messages.pot")
    assert msgids(extracted) == committed, "run `make messages`"
    for catalog in (PROJECT_ROOT / "locales").glob("*/LC_MESSAGES/messages.po"):
        assert msgids(catalog) == committed, f"{catalog} is out of date: run `make messages`"


def translated_catalogs() -> list[Path]:
    """Every catalog but the source language's (English msgids are the English text)."""
    return sorted(
        path
        for path in (PROJECT_ROOT / "locales").glob("*/LC_MESSAGES/messages.po")
        if path.parts[-3] != "en"
    )


def test_every_supported_language_has_a_catalog() -> None:
    from bot.settings import Settings

    present = {path.parts[-3] for path in translated_catalogs()} | {"en"}
    assert set(Settings(_env_file=None).supported_languages) <= present  # type: ignore[call-arg]


def test_translations_are_complete_and_keep_their_placeholders() -> None:
    placeholder = re.compile(r"\{(\w*)\}")
    for path in translated_catalogs():
        with path.open("rb") as stream:
            catalog = read_po(stream)
        problems = []
        for message in catalog:
            if not message.id:
                continue
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            wanted = set(placeholder.findall(ids[-1])) | set(placeholder.findall(ids[0]))
            if message.fuzzy or not all(strings):
                problems.append(f"untranslated: {ids[0]!r}")
            for text in strings:
                if text and set(placeholder.findall(text)) - wanted:
                    problems.append(f"unknown placeholder in {ids[0]!r}: {text!r}")
                if text and not set(placeholder.findall(ids[0])) <= set(
                    placeholder.findall(text)
                ) | {"count"}:
                    problems.append(f"placeholder missing in {ids[0]!r}: {text!r}")
        assert not problems, (path.parts[-3], problems[:10])
