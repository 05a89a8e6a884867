"""The Babel catalogs are in step with the sources (``make messages`` regenerates them)."""

from __future__ import annotations

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
