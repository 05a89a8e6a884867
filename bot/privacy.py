"""Personal data never reaches the logs in clear: identities are logged as short hashes."""

from __future__ import annotations

import hashlib


def mask(value: str | None) -> str:
    """A stable, non-reversible tag for a phone number, chat id or session id."""
    if not value:
        return "-"
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
    return f"id:{digest[:10]}"
