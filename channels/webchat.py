"""The web chat: a page at ``/`` and a websocket, for any browser, old phones included.

The browser is identified by a random session cookie the server issues (HttpOnly), never
by anything the page chooses. Browsers without WebSocket fall back to a plain POST and
poll for messages. A websocket from another origin is refused (cross-site websocket
hijacking). What is said outside a reply turn (an agent's reply, a queue update, a
status notification) waits in the outbox until this browser collects it: pushed on its
websocket within a second, whichever replica holds the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from channels.base import Channel, IncomingMessage
from channels.limits import MAX_TEXT_CHARS, StorableText, loads, storable

logger = logging.getLogger(__name__)

COOKIE = "civicgate_chat"
PUSH_SECONDS = 1.0  # how often an open websocket looks for messages said outside a turn
FRAME_OVERHEAD = 1024  # a frame's JSON around its message
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
            if not request.cookies.get(COOKIE):
                response.set_cookie(
                    COOKIE,
                    secrets.token_urlsafe(32),
                    httponly=True,
                    samesite="strict",
                    max_age=60 * 60 * 24 * 30,
                    secure=request.url.scheme == "https",
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
            session: Annotated[str | None, Cookie(alias=COOKIE)] = None,
        ) -> list[dict[str, Any]]:
            if not session:
                raise HTTPException(403, "no chat session; reload the page")
            language = self.page_language(request.headers.get("accept-language"))
            if len(body.message) > MAX_TEXT_CHARS:
                return [self._too_long(language)]
            return await self._exchange(session, body.message, language)

        @router.get("/messages")
        async def waiting_messages(
            session: Annotated[str | None, Cookie(alias=COOKIE)] = None,
        ) -> list[dict[str, Any]]:
            """For browsers without WebSocket: what was said since they last looked."""
            if not session:
                raise HTTPException(403, "no chat session; reload the page")
            return await self._collect(await self._identity(session))

        @router.websocket("/ws")
        async def websocket(socket: WebSocket) -> None:
            session = socket.cookies.get(COOKIE)
            if not session or not _same_origin(socket):
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


def _same_origin(socket: WebSocket) -> bool:
    origin = socket.headers.get("origin")
    if origin is None:
        return True  # not a browser: cookies would not be sent cross-site anyway
    return urlsplit(origin).netloc == socket.headers.get("host")
