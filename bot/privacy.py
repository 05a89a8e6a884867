"""Personal data never reaches the logs in clear: identities are logged as keyed hashes.

A tag is an HMAC-SHA256 under ``LOG_MASK_KEY`` (``bot/settings.py``; a placeholder is
refused in production): stable within a deployment, so operators can follow one sender
through the logs, and not reversible without the key (a phone number has few enough
possible values to be found from an unkeyed hash by trying them all).
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from bot.settings import get_settings


@lru_cache(maxsize=1)
def _settings_key() -> bytes:
    return get_settings().log_mask_key.get_secret_value().encode("utf-8")


def mask(value: str | None, key: bytes | None = None) -> str:
    """A stable, non-reversible tag for a phone number, chat id or session id."""
    if not value:
        return "-"
    digest = hmac.new(key or _settings_key(), value.encode("utf-8"), hashlib.sha256)
    return f"id:{digest.hexdigest()[:16]}"
