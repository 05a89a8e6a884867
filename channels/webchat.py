"""The web chat: a page at ``/`` and a websocket, for any browser, old phones included.

The browser is identified by a random session cookie the server issues with the page
(HttpOnly, SameSite=Lax, Secure behind https), signed with ``WEBCHAT_COOKIE_SECRET``: a
cookie the client made up, or one whose signature does not match, is refused with 403 and
nothing is stored, so identities cannot be minted to get around per-identity limits.
Browsers without WebSocket fall back to a plain POST and poll for messages. A websocket
from an origin not in ``WEBCHAT_ALLOWED_ORIGINS`` (default: PUBLIC_BASE_URL's and the
request's own host) is refused (cross-site websocket hijacking). What is said outside a
reply turn (an agent's reply, a queue update, a status notification) waits in the outbox
until this browser collects it: pushed on its websocket within a second, whichever replica
holds the socket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import jinja2
from babel import Locale
from fastapi import APIRouter, Cookie, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from sqlalchemy import select

from bot.conversation import TOO_LONG_MESSAGE
from bot.db.models import ChannelIdentity, Delivery
from bot.delivering import collect_webchat
from bot.i18n import localizer
from bot.settings import Settings, origin_of
from channels.base import Channel, IncomingMessage
from channels.limits import MAX_TEXT_CHARS, StorableText, loads, storable

logger = logging.getLogger(__name__)

COOKIE = "civicgate_chat"
PUSH_SECONDS = 1.0  # how often an open websocket looks for messages said outside a turn
FRAME_OVERHEAD = 1024  # a frame's JSON around its message
COOKIE_MAX_AGE = 60 * 60 * 24 * 30
# "<session id>.<signature>": 32 random bytes and an HMAC-SHA256, both base64url.
SIGNED_COOKIE = re.compile(r"([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{43})")
NO_SESSION = "no chat session; reload the page"
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    extensions=["jinja2.ext.i18n"],
)
STATIC_DIR = Path(__file__).with_name("static")


class ChatPost(BaseModel):
    message: StorableText = ""  # past MAX_TEXT_CHARS: answered politely, not stored


class WebChatChannel(Channel):
    name = "webchat"
    redacted_keys = frozenset({"message", COOKIE})

    def page_language(self, accept_language: str | None) -> str:
        supported = list(self.settings.supported_languages)
        wanted = [
            part.split(";")[0].strip().replace("-", "_")
            for part in (accept_language or "").split(",")
            if part.strip()
        ]
        negotiated = Locale.negotiate(wanted, supported, sep="_")
        return str(negotiated) if negotiated else self.settings.default_language

    def root_routes(self) -> list[tuple[str, Any]]:
        async def page(request: Request) -> Response:
            language = self.page_language(request.headers.get("accept-language"))
            words = localizer(language)
            template = TEMPLATES.get_template("webchat.html")
            template.environment.install_gettext_callables(  # type: ignore[attr-defined]
                words.gettext, words.ngettext, newstyle=True
            )
            html = template.render(language=language)
            response = HTMLResponse(html)
            if self._session(request.cookies.get(COOKIE)) is None:  # none yet, or not ours
                response.set_cookie(
                    COOKIE,
                    issue_cookie(self.settings),
                    httponly=True,
                    samesite="lax",
                    max_age=COOKIE_MAX_AGE,
                    secure=_secure(self.settings, request),
                )
            return response

        return [("/", page)]

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.get("/webchat.js")
        async def script() -> Response:
            return Response(
                (STATIC_DIR / "webchat.js").read_text(encoding="utf-8"),
                media_type="application/javascript",
            )

        @router.post("/messages")
        async def post_message(
            request: Request,
            body: ChatPost,
            cookie: Annotated[str | None, Cookie(alias=COOKIE)] = None,
        ) -> list[dict[str, Any]]:
            session = self._session(cookie)
            if session is None:
                raise HTTPException(403, NO_SESSION)
            language = self.page_language(request.headers.get("accept-language"))
            if len(body.message) > MAX_TEXT_CHARS:
                return [self._too_long(language)]
            return await self._exchange(session, body.message, language)

        @router.get("/messages")
        async def waiting_messages(
            cookie: Annotated[str | None, Cookie(alias=COOKIE)] = None,
        ) -> list[dict[str, Any]]:
            """For browsers without WebSocket: what was said since they last looked."""
            session = self._session(cookie)
            if session is None:
                raise HTTPException(403, NO_SESSION)
            return await self._collect(await self._identity(session))

        @router.websocket("/ws")
        async def websocket(socket: WebSocket) -> None:
            session = self._session(socket.cookies.get(COOKIE))
            if session is None or not _allowed_origin(self.settings, socket):
                # Before accepting: the handshake is refused (HTTP 403), nothing is read.
                await socket.close(code=1008)
                return
            await socket.accept()
            language = self.page_language(socket.headers.get("accept-language"))
            pusher = asyncio.create_task(self._push(socket, session))
            try:
                while True:
                    frame = await socket.receive()
                    if frame["type"] == "websocket.disconnect":
                        return
                    text = frame_message(frame)
                    replies = (
                        [self._too_long(language)]
                        if text is None
                        else await self._exchange(session, text, language)
                    )
                    for reply in replies:
                        await socket.send_json(reply)
            except WebSocketDisconnect:
                return
            finally:
                pusher.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pusher

        return router

    def _session(self, cookie: str | None) -> str | None:
        """The signed cookie the server issued (its whole value is the identity), or None
        for a missing, unsigned or forged one."""
        return cookie if cookie is not None and cookie_is_ours(self.settings, cookie) else None

    async def _exchange(self, session: str, text: str, language: str) -> list[dict[str, Any]]:
        """One turn; the browser's language counts until the citizen's is known."""
        replies = await self.conversations.handle(
            IncomingMessage(
                channel=self.name, sender=session, text=text, metadata={"language": language}
            )
        )
        self.services.metrics.messages_sent.labels(self.name).inc(len(replies))
        return [reply.as_rest_json() for reply in replies]

    def _too_long(self, language: str) -> dict[str, Any]:
        """The answer to a message refused at the door (past MAX_TEXT_CHARS, not stored)."""
        self.services.metrics.messages_sent.labels(self.name).inc()
        limit = self.settings.max_message_chars
        return {"text": localizer(language).gettext(TOO_LONG_MESSAGE).format(limit=limit)}

    async def _push(self, socket: WebSocket, session: str) -> None:
        identity_id = None  # found once: a browser's identity never changes
        while True:
            await asyncio.sleep(PUSH_SECONDS)
            identity_id = identity_id or await self._identity(session)
            for message in await self._collect(identity_id):
                await socket.send_json(message)

    async def _identity(self, session: str) -> str | None:
        async with self.conversations.sessions() as db:
            return await db.scalar(
                select(ChannelIdentity.id).where(
                    ChannelIdentity.channel == self.name, ChannelIdentity.external_id == session
                )
            )

    async def _collect(self, identity_id: str | None) -> list[dict[str, Any]]:
        if identity_id is None:  # the browser has not written yet
            return []
        async with self.conversations.sessions() as db:
            collected = await collect_webchat(db, identity_id)
            await db.commit()
        self.services.metrics.messages_sent.labels(self.name).inc(len(collected))
        return [_as_json(delivery) for delivery in collected]


def frame_message(frame: Mapping[str, Any]) -> str | None:
    """The message in a websocket frame: ``{"message": …}`` as the page sends it, else the
    frame's text as typed; None past :data:`MAX_TEXT_CHARS` (checked before parsing)."""
    raw = frame.get("text")
    if raw is None:
        raw = (frame.get("bytes") or b"").decode("utf-8", errors="replace")
    if len(raw) > MAX_TEXT_CHARS + FRAME_OVERHEAD:
        return None
    try:
        data = loads(raw)
    except ValueError:
        return storable(raw)
    text = str(data.get("message", "")) if isinstance(data, dict) else ""
    return text if len(text) <= MAX_TEXT_CHARS else None


def _as_json(delivery: Delivery) -> dict[str, Any]:
    """A stored message as the page shows replies; options answer with their number."""
    titles = (delivery.keyboard or {}).get("inline") or []
    buttons = [{"title": title, "payload": str(n)} for n, title in enumerate(titles, start=1)]
    return {"text": delivery.body, "buttons": buttons} if buttons else {"text": delivery.body}


def _signature(settings: Settings, session_id: str) -> str:
    key = settings.webchat_cookie_secret.get_secret_value().encode("utf-8")
    digest = hmac.new(key, f"{COOKIE}:{session_id}".encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def issue_cookie(settings: Settings) -> str:
    """A new browser identity: a random session id and its signature."""
    session_id = secrets.token_urlsafe(32)
    return f"{session_id}.{_signature(settings, session_id)}"


def cookie_is_ours(settings: Settings, cookie: str) -> bool:
    parts = SIGNED_COOKIE.fullmatch(cookie)
    if parts is None:
        return False
    return hmac.compare_digest(parts.group(2), _signature(settings, parts.group(1)))


def _secure(settings: Settings, request: Request) -> bool:
    """Secure when the page is served at an https PUBLIC_BASE_URL (TLS ending at a proxy),
    or over https itself; not on a loopback port beside it (tests, ``make run``)."""
    public = settings.public_base_url
    at_public = (
        public is not None
        and public.scheme == "https"
        and urlsplit(str(public)).netloc.lower()
        == (request.headers.get("host") or "").lower().removesuffix(":443")
    )
    return at_public or request.url.scheme == "https"


def _allowed_origin(settings: Settings, socket: WebSocket) -> bool:
    """A browser always sends ``Origin`` with a websocket: one of WEBCHAT_ALLOWED_ORIGINS
    when they are listed; otherwise PUBLIC_BASE_URL's, or the host the request was made
    to (the page this gateway served: a loopback port beside the public URL too)."""
    origin = socket.headers.get("origin")
    if not origin:
        return False
    if origin_of(origin) in settings.webchat_origins:
        return True
    if settings.webchat_allowed_origins:
        return False  # listed: only those
    return urlsplit(origin).netloc.lower() == (socket.headers.get("host") or "").lower()
