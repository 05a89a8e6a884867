"""What a channel accepts before anything else looks at it: bounded bodies and text that
can be stored.

Every inbound request under ``/channels/`` is refused with 413 past
:data:`MAX_BODY_BYTES` before it is parsed (:class:`BodySizeLimit`), and a message past
:data:`MAX_TEXT_CHARS` gets a polite answer (or a 422 on REST) without reaching the
conversation. Text from JSON may hold what no database stores: a lone UTF-16 surrogate
(``"\\ud800"`` is valid JSON) or NUL (PostgreSQL's ``text`` refuses it); both become
U+FFFD, the replacement character, as a UTF-8 decoder does with broken bytes.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Annotated, Any

from pydantic import BeforeValidator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_TEXT_CHARS = 100_000  # a message longer than this is refused at the channel
MAX_BODY_BYTES = 1024 * 1024  # 100,000 emoji as UTF-8 (the page sends them so) fit twice
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable(text: str) -> str:
    """``text`` with lone surrogates and NUL replaced by U+FFFD."""
    return _UNSTORABLE.sub(REPLACEMENT, text)


def _storable_text(value: Any) -> Any:
    return storable(value) if isinstance(value, str) else value


def _refuse_unstorable(value: Any) -> Any:
    if isinstance(value, str) and _UNSTORABLE.search(value):
        raise ValueError("contains a lone surrogate or NUL")
    return value


# A citizen's words in a JSON body: what cannot be stored becomes U+FFFD (before pydantic,
# which refuses a lone surrogate, sees it), so the message is kept and answered.
StorableText = Annotated[str, BeforeValidator(_storable_text)]
# An identifier is not repaired (two different ones would become one): refused, with 422.
StorableId = Annotated[str, BeforeValidator(_refuse_unstorable)]


def storable_json(value: Any) -> Any:
    """Every string (keys too) of decoded JSON made :func:`storable`."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(key)): storable_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable_json(item) for item in value]
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: no database stores them


def loads(data: str | bytes) -> Any:
    """Strict JSON (no NaN or Infinity), its strings made storable. Raises ``ValueError``
    (``RecursionError`` is turned into one) on anything else."""
    try:
        return storable_json(json.loads(data, parse_constant=_no_constants))
    except RecursionError as exc:  # "[[[[…" nested past the interpreter's limit
        raise ValueError("JSON nested too deeply") from exc


class BodyTooLargeError(Exception):
    """Raised from ``receive`` when a body without a usable length grows past the limit."""


class BodySizeLimit:
    """Refuses (413) a request body under ``prefix`` larger than ``limit`` bytes, before
    the application reads it: from ``Content-Length`` at once, else while it streams."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES, prefix: str = "/channels/"):
        self.app = app
        self.limit = limit
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _too_large(send, self.limit)
            return
        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:  # the app answered its own parse error: ours is the true one
                return
            started = True
            await send(message)

        with contextlib.suppress(BodyTooLargeError):  # raised through the app: answered here
            await self.app(scope, limited_receive, guarded_send)
        if over and not started:
            await _too_large(send, self.limit)


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
