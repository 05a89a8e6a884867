"""Signed status webhooks between a backend and the gateway (shared secret, HMAC-SHA256).

The signature covers a timestamp and the exact body, so a captured request can neither be
altered nor replayed later: the receiver refuses timestamps outside a short window and
remembers event ids inside it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Civicgate-Timestamp"
SIGNATURE_HEADER = "X-Civicgate-Signature"
TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        "Content-Type": "application/json",
    }


def is_authentic(
    secret: str, timestamp: str | None, given: str | None, body: bytes, now: float | None = None
) -> bool:
    """A fresh timestamp and a matching signature (compared in constant time)."""
    if not timestamp or not given or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(given.encode(), signature(secret, timestamp, body).encode())
