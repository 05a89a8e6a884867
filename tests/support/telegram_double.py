"""A Telegram Bot API double on loopback, spoken to by the real python-telegram-bot client.

It serves ``/bot{token}/{method}`` like api.telegram.org: a JSON, form-encoded or multipart
body (PTB sends form-encoded, every value a string, nested objects such as ``reply_markup``
JSON-encoded), ``{"ok": true, "result": ...}`` back, and Telegram's error bodies and HTTP
statuses, so the gateway's own error mapping is exercised rather than mocked. It is strict
where Telegram is strict and gateways tend to slip: MarkdownV2 escaping, the 4096-character
limit, callback data over 64 bytes, re-answering a callback query, editing a keyboard to
itself. ``TelegramUser`` plays the citizen's app: it posts real Update JSON to the webhook.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import EllipsisType
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

BOT_TOKEN = "123456:TEST-telegram-token"
BOT_ID = 123456
BOT_USERNAME = "civicgate_test_bot"
BOT_FIRST_NAME = "CivicGate Test"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_PATH = "/channels/telegram"
MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64

JSONDict = dict[str, Any]

BOT_USER: JSONDict = {
    "id": BOT_ID,
    "is_bot": True,
    "first_name": BOT_FIRST_NAME,
    "username": BOT_USERNAME,
}

# Telegram's method names are case-insensitive; calls are recorded under these spellings.
_METHODS = {
    name.lower(): name
    for name in (
        "getMe", "sendMessage", "answerCallbackQuery", "editMessageReplyMarkup",
        "setWebhook", "deleteWebhook", "getWebhookInfo", "getUpdates",
    )
}  # fmt: skip

# How form values (always strings) are turned back into what the caller meant. Free-text and
# identifier fields stay strings even when they look like numbers, booleans or JSON.
_STRING_KEYS = frozenset(
    {"text", "caption", "url", "secret_token", "callback_query_id", "inline_message_id",
     "parse_mode", "ip_address", "query", "title", "description", "emoji", "name"}
)  # fmt: skip
_INT_KEYS = frozenset(
    {"chat_id", "message_id", "from_chat_id", "user_id", "offset", "limit", "timeout",
     "max_connections", "cache_time", "message_thread_id", "reply_to_message_id"}
)  # fmt: skip
_INT = re.compile(r"-?\d+")

_RESERVED = "_*[]()~`>#+-=|{}.!"
_ESCAPABLE = _RESERVED + "\\"
_ENTITY_NAMES = {  # tdlib's names, as they appear in Telegram's parse errors
    "bold": "Bold", "italic": "Italic", "underline": "Underline",
    "strikethrough": "Strikethrough", "spoiler": "Spoiler", "text_link": "TextUrl",
    "code": "Code", "pre": "Pre", "custom_emoji": "CustomEmoji",
}  # fmt: skip
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"


class ApiError(Exception):
    """A Bot API error: the HTTP status and description Telegram would answer with."""

    def __init__(self, status: int, description: str, parameters: JSONDict | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


@dataclass
class TelegramDouble:
    """The Bot API as one bot sees it, recording every call.

    ``failures`` are HTTP statuses for the next sendMessage calls (as TwilioDouble's are for
    sends), so a getMe or getUpdates poll cannot swallow them; ``failures_for`` does the same
    for any method by name. ``sent`` holds only delivered messages; ``calls`` every attempt.
    """

    calls: list[tuple[str, JSONDict]] = field(default_factory=list)
    sent: list[JSONDict] = field(default_factory=list)  # sendMessage params + "message_id"
    blocked: set[int] = field(default_factory=set)
    failures: list[int] = field(default_factory=list)
    failures_for: dict[str, list[int]] = field(default_factory=dict)
    on_send: Callable[[JSONDict], None] | None = None
    webhook: JSONDict = field(default_factory=dict)  # the last setWebhook params
    _updates: list[JSONDict] = field(default_factory=list)
    _messages: dict[tuple[int, int], JSONDict] = field(default_factory=dict)
    _last_message_id: dict[int, int] = field(default_factory=dict)
    _users: dict[int, JSONDict] = field(default_factory=dict)
    _answered: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.api_route("/bot{token}/{method}", methods=["GET", "POST"])
        async def bot_api(token: str, method: str, request: Request) -> JSONResponse:
            if token != BOT_TOKEN:
                return _error(ApiError(401, "Unauthorized"))
            name = _METHODS.get(method.lower())
            if name is None:
                return _error(ApiError(404, "Not Found"))
            try:
                params = await _read_params(request)
            except ApiError as exc:
                return _error(exc)
            with self._lock:
                self.calls.append((name, params))
                queue = self.failures if name == "sendMessage" else None
                queue = queue or self.failures_for.get(name)
                status = queue.pop(0) if queue else None
            try:
                if status is not None:
                    raise _injected(status)
                if name == "getUpdates":
                    result: Any = await self._get_updates(params)
                else:
                    result = self._handle(name, params)
            except ApiError as exc:
                return _error(exc)
            if name == "sendMessage" and self.on_send is not None:
                self.on_send(self._record(params["chat_id"], result["message_id"]))
            return JSONResponse({"ok": True, "result": result})

        return app

    # -- state the tests set up ---------------------------------------------------------------

    def queue_update(self, update: JSONDict) -> JSONDict:
        """Queue ``update`` for getUpdates (polling mode); gives it an update_id if it has none."""
        update = {"update_id": update.get("update_id") or next(_UPDATE_IDS), **update}
        with self._lock:
            self._updates.append(update)
        return update

    def register_user(self, user: JSONDict) -> None:
        """Remember a citizen so chats in returned Messages carry their name, as Telegram's do."""
        with self._lock:
            self._users[int(user["id"])] = dict(user)

    def next_message_id(self, chat_id: int) -> int:
        """The next message_id in a chat: Telegram numbers both sides of a private chat together."""
        with self._lock:
            return self._next_message_id(chat_id)

    # -- what the tests read --------------------------------------------------------------------

    def sent_to(self, chat_id: int) -> list[JSONDict]:
        """The sendMessage params delivered to ``chat_id`` (raw text, plus the message_id)."""
        with self._lock:
            return [copy.deepcopy(p) for p in self.sent if p.get("chat_id") == chat_id]

    def messages_to(self, chat_id: int) -> list[JSONDict]:
        """The Messages in ``chat_id`` as the citizen sees them now: parsed text, edits applied."""
        with self._lock:
            found = [m for (chat, _), m in self._messages.items() if chat == chat_id]
            return [copy.deepcopy(m) for m in sorted(found, key=lambda m: m["message_id"])]

    def texts_to(self, chat_id: int) -> list[str]:
        """What the citizen reads: the texts after MarkdownV2 parsing, without escapes."""
        return [str(m["text"]) for m in self.messages_to(chat_id)]

    def message(self, chat_id: int, message_id: int) -> JSONDict | None:
        with self._lock:
            found = self._messages.get((chat_id, message_id))
            return copy.deepcopy(found) if found is not None else None

    def calls_of(self, method: str) -> list[JSONDict]:
        with self._lock:
            return [copy.deepcopy(p) for name, p in self.calls if name == method]

    def wait_for_sent(self, chat_id: int, count: int, timeout: float = 30.0) -> list[JSONDict]:
        """The messages delivered to ``chat_id`` once there are at least ``count`` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = self.sent_to(chat_id)
            if len(sent) >= count:
                return sent
            time.sleep(0.01)
        texts = [p.get("text") for p in self.sent_to(chat_id)]
        raise AssertionError(f"{count} messages to {chat_id} expected, got {texts}")

    def wait_for_call(
        self,
        method: str,
        predicate: Callable[[JSONDict], bool] | None = None,
        timeout: float = 30.0,
    ) -> JSONDict:
        """The first call of ``method`` (matching ``predicate``), made before or during the wait."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for params in self.calls_of(method):
                if predicate is None or predicate(params):
                    return params
            time.sleep(0.01)
        raise AssertionError(f"no matching {method} call; calls: {self.calls_of(method)}")

    # -- the methods ----------------------------------------------------------------------------

    def _handle(self, name: str, params: JSONDict) -> Any:
        with self._lock:
            if name == "getMe":
                return {**BOT_USER, "can_join_groups": True, "can_read_all_group_messages": False,
                        "supports_inline_queries": False, "can_connect_to_business": False,
                        "has_main_web_app": False}  # fmt: skip
            if name == "sendMessage":
                return self._send_message(params)
            if name == "answerCallbackQuery":
                query_id = str(params.get("callback_query_id", ""))
                if not query_id or query_id in self._answered:
                    raise ApiError(400, _QUERY_TOO_OLD)
                self._answered.add(query_id)
                return True
            if name == "editMessageReplyMarkup":
                return self._edit_reply_markup(params)
            if name == "setWebhook":
                return self._set_webhook(params)
            if name == "deleteWebhook":
                self.webhook = {}
                if params.get("drop_pending_updates") is True:
                    self._updates.clear()
                return True
            assert name == "getWebhookInfo", name
            info: JSONDict = {"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                              "pending_update_count": len(self._updates)}  # fmt: skip
            if info["url"]:
                info["max_connections"] = self.webhook.get("max_connections", 40)
                if "allowed_updates" in self.webhook:
                    info["allowed_updates"] = self.webhook["allowed_updates"]
            return info

    def _send_message(self, params: JSONDict) -> JSONDict:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        if not isinstance(chat_id, int):
            raise ApiError(400, "Bad Request: chat not found")
        text, entities = _parse_text(params)
        markup = params.get("reply_markup")
        _check_markup(markup)
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        message: JSONDict = {
            "message_id": self._next_message_id(chat_id),
            "from": dict(BOT_USER),
            "chat": self._chat(chat_id),
            "date": int(time.time()),
            "text": text,
        }
        if entities:
            message["entities"] = entities
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = {"inline_keyboard": markup["inline_keyboard"]}
        self._messages[(chat_id, message["message_id"])] = message
        self.sent.append({**params, "message_id": message["message_id"]})
        return copy.deepcopy(message)

    def _edit_reply_markup(self, params: JSONDict) -> JSONDict | bool:
        if "inline_message_id" in params:
            return True
        chat_id, message_id = params.get("chat_id"), params.get("message_id")
        message = None
        if isinstance(chat_id, int) and isinstance(message_id, int):
            message = self._messages.get((chat_id, message_id))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        markup = params.get("reply_markup")
        _check_markup(markup)
        keyboard = markup.get("inline_keyboard") if isinstance(markup, dict) else None
        current = message.get("reply_markup", {}).get("inline_keyboard")
        if (keyboard or None) == (current or None):
            raise ApiError(400, _NOT_MODIFIED)
        if keyboard:
            message["reply_markup"] = {"inline_keyboard": keyboard}
        else:
            message.pop("reply_markup", None)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _set_webhook(self, params: JSONDict) -> bool:
        url = str(params.get("url", ""))
        if not url:
            self.webhook = {}
            return True
        if not url.startswith("https://"):
            raise ApiError(
                400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
            )
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_TOKEN.fullmatch(str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        self.webhook = dict(params)
        return True

    async def _get_updates(self, params: JSONDict) -> list[JSONDict]:
        """Hand out queued updates and forget them; an empty poll waits at most 1 s."""
        offset = params.get("offset")
        limit = int(params.get("limit") or 100)
        wait = min(float(params.get("timeout") or 0), 1.0)
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                if self.webhook.get("url"):
                    raise ApiError(
                        409,
                        "Conflict: can't use getUpdates method while webhook is active; "
                        "use deleteWebhook to delete the webhook first",
                    )
                if isinstance(offset, int) and offset < 0:
                    self._updates = self._updates[offset:]
                elif isinstance(offset, int):
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                batch, self._updates = self._updates[:limit], self._updates[limit:]
            if batch or time.monotonic() >= deadline:
                return batch
            await asyncio.sleep(0.02)

    def _record(self, chat_id: int, message_id: int) -> JSONDict:
        with self._lock:
            found = (p for p in reversed(self.sent) if p["chat_id"] == chat_id)
            return copy.deepcopy(next(p for p in found if p["message_id"] == message_id))

    def _next_message_id(self, chat_id: int) -> int:
        self._last_message_id[chat_id] = self._last_message_id.get(chat_id, 0) + 1
        return self._last_message_id[chat_id]

    def _chat(self, chat_id: int) -> JSONDict:
        user = self._users.get(chat_id, {})
        chat: JSONDict = {"id": chat_id, "first_name": user.get("first_name", "Citizen")}
        if "username" in user:
            chat["username"] = user["username"]
        return {**chat, "type": "private"}


def _error(exc: ApiError) -> JSONResponse:
    body: JSONDict = {"ok": False, "error_code": exc.status, "description": exc.description}
    if exc.parameters:
        body["parameters"] = exc.parameters
    return JSONResponse(body, status_code=exc.status)


def _injected(status: int) -> ApiError:
    if status == 429:
        return ApiError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
    if status == 403:
        return ApiError(403, "Forbidden: bot was blocked by the user")
    if status == 400:
        return ApiError(400, "Bad Request")
    try:
        return ApiError(status, HTTPStatus(status).phrase)
    except ValueError:
        return ApiError(status, "Unknown Error")


async def _read_params(request: Request) -> JSONDict:
    """The call's parameters from the query string and a JSON, form or multipart body."""
    raw: JSONDict = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = await request.body()
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise ApiError(400, "Bad Request: can't parse JSON object") from exc
            if not isinstance(data, dict):
                raise ApiError(400, "Bad Request: can't parse JSON object")
            raw.update(data)
    elif content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        async with request.form() as form:
            for key, value in form.multi_items():
                if isinstance(value, str):
                    raw[key] = value
                else:  # an uploaded file: its description is all a test needs
                    content = await value.read()
                    raw[key] = {"filename": value.filename, "size": len(content),
                                "content_type": value.content_type}  # fmt: skip
    return {key: _decode(key, value) for key, value in raw.items()}


def _decode(key: str, value: Any) -> Any:
    """Undo PTB's stringification: ints, booleans and JSON-encoded objects come back typed."""
    if not isinstance(value, str) or key in _STRING_KEYS:
        return value
    if key in _INT_KEYS:
        return int(value) if _INT.fullmatch(value) else value
    if value in ("true", "false"):
        return value == "true"
    if value.startswith(("{", "[")):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _parse_text(params: JSONDict) -> tuple[str, list[JSONDict]]:
    """The text and entities Telegram would store, or the 400 it would answer."""
    raw = params.get("text")
    text = "" if raw is None else str(raw)
    parse_mode = params.get("parse_mode")
    entities: list[JSONDict] = []
    if parse_mode == "MarkdownV2":
        try:
            text, entities = parse_markdown_v2(text)
        except ValueError as exc:
            raise ApiError(400, f"Bad Request: can't parse entities: {exc}") from exc
    elif parse_mode not in (None, "", "HTML", "Markdown"):
        raise ApiError(400, "Bad Request: unsupported parse_mode")
    elif isinstance(params.get("entities"), list):
        entities = list(params["entities"])
    text, entities = _strip(text, entities)
    if not text:
        raise ApiError(400, "Bad Request: message text is empty")
    if utf16_len(text) > MAX_TEXT_LENGTH:
        raise ApiError(400, "Bad Request: message is too long")
    return text, entities


def _check_markup(markup: Any) -> None:
    """Reject inline keyboards Telegram rejects; callback data over 64 bytes is the usual one."""
    if not isinstance(markup, dict) or "inline_keyboard" not in markup:
        return
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise ApiError(400, "Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup "
                            "must be an Array of Arrays")  # fmt: skip
    for button in itertools.chain.from_iterable(rows):
        if not isinstance(button, dict) or not button.get("text"):
            raise ApiError(400, "Bad Request: can't parse inline keyboard button: "
                                "Text must be non-empty")  # fmt: skip
        if set(button) == {"text"}:
            raise ApiError(400, "Bad Request: can't parse inline keyboard button: "
                                "Text buttons are unallowed in the inline keyboard")  # fmt: skip
        if "callback_data" in button:
            size = len(str(button["callback_data"]).encode())
            if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")


def utf16_len(text: str) -> int:
    """Telegram measures text and entity offsets in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _strip(text: str, entities: list[JSONDict]) -> tuple[str, list[JSONDict]]:
    """Trim surrounding whitespace as Telegram does, keeping entity offsets right."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    end = utf16_len(stripped)
    kept: list[JSONDict] = []
    for entity in entities:
        start = max(int(entity["offset"]) - lead, 0)
        stop = min(int(entity["offset"]) + int(entity["length"]) - lead, end)
        if stop > start:
            kept.append({**entity, "offset": start, "length": stop - start})
    return stripped, kept


@dataclass
class _Open:
    type: str
    byte_offset: int
    start: int  # where its text begins in the output, in characters
    language: str = ""


def _reserved(char: str) -> ValueError:
    return ValueError(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")


def parse_markdown_v2(text: str) -> tuple[str, list[JSONDict]]:
    """Parse MarkdownV2 the way Telegram's server (tdlib) does, into plain text and entities.

    Stricter than Telegram in one respect: a backslash before a character that needs no
    escaping is an error here, where Telegram silently drops the backslash, so an escaper
    that forgets to escape ``\\`` itself fails the test instead of losing the character.
    """
    out: list[str] = []
    entities: list[JSONDict] = []
    stack: list[_Open] = []
    quote_start: int | None = None
    i, n = 0, len(text)

    def offset16(position: int) -> int:
        return utf16_len("".join(out[:position]))

    def add(kind: str, start: int, end: int | None = None, **extra: str) -> None:
        stop = len(out) if end is None else end
        if stop > start:
            entities.append({"type": kind, "offset": offset16(start),
                             "length": offset16(stop) - offset16(start), **extra})  # fmt: skip

    while i < n:
        c = text[i]
        if i == 0 or text[i - 1] == "\n":  # blockquotes are runs of lines starting with '>'
            in_code = bool(stack) and stack[-1].type in ("code", "pre")
            if c == ">" and not in_code:
                if quote_start is None:
                    quote_start = len(out)
                i += 1
                continue
            if quote_start is not None:
                add("blockquote", quote_start, len(out) - 1)  # the newline is not quoted
                quote_start = None
        if c == "\\":
            if i + 1 < n and text[i + 1] in _ESCAPABLE:
                out.append(text[i + 1])
                i += 2
                continue
            raise _reserved("\\")
        top = stack[-1] if stack else None
        in_code = top is not None and top.type in ("code", "pre")
        if c not in ("`" if in_code else _RESERVED):
            out.append(c)
            i += 1
            continue
        ends = top is not None and (
            (top.type == "bold" and c == "*")
            or (top.type == "italic" and c == "_" and not text.startswith("__", i))
            or (top.type == "underline" and text.startswith("__", i))
            or (top.type == "strikethrough" and c == "~")
            or (top.type == "spoiler" and text.startswith("||", i))
            or (top.type == "code" and c == "`")
            or (top.type == "pre" and text.startswith("```", i))
            or (top.type in ("text_link", "custom_emoji") and c == "]")
        )
        if top is not None and ends:
            stack.pop()
            i += {"underline": 2, "spoiler": 2, "pre": 3}.get(top.type, 1)
            if top.type in ("text_link", "custom_emoji"):
                if i < n and text[i] == "(":
                    url_begin = i + 1
                    url, i = _read_url(text, url_begin)
                elif top.type == "text_link":
                    url = "".join(out[top.start :])
                else:
                    raise ValueError("Custom emoji entity must contain a tg://emoji URL")
                if top.type == "text_link":
                    add("text_link", top.start, url=url)
                else:
                    add("custom_emoji", top.start, custom_emoji_id=url.rpartition("id=")[2])
            elif top.type == "pre" and top.language:
                add("pre", top.start, language=top.language)
            else:
                add(top.type, top.start)
            continue
        byte_offset = len(text[:i].encode())
        language = ""
        if text.startswith("__", i):
            kind, i = "underline", i + 2
        elif text.startswith("||", i):
            kind, i = "spoiler", i + 2
        elif text.startswith("![", i):
            kind, i = "custom_emoji", i + 2
        elif text.startswith("```", i):
            kind, i = "pre", i + 3
            end = i
            while end < n and not text[end].isspace() and text[end] != "`":
                end += 1
            if end != i and end < n and text[end] != "`":
                language, i = text[i:end], end
            if text.startswith(("\r\n", "\n\r"), i):
                i += 2
            elif i < n and text[i] in "\r\n":
                i += 1
        elif c in "_*~[`":
            kind = {"_": "italic", "*": "bold", "~": "strikethrough", "[": "text_link",
                    "`": "code"}[c]  # fmt: skip
            i += 1
        else:
            raise _reserved(c)
        stack.append(_Open(kind, byte_offset, len(out), language))
    if stack:
        top = stack[-1]
        name = "PreCode" if top.type == "pre" and top.language else _ENTITY_NAMES[top.type]
        raise ValueError(f"Can't find end of {name} entity at byte offset {top.byte_offset}")
    if quote_start is not None:
        add("blockquote", quote_start)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _read_url(text: str, begin: int) -> tuple[str, int]:
    """The URL of ``[text](url)`` starting at ``begin``, and the index just past its ')'."""
    url: list[str] = []
    i = begin
    while i < len(text) and text[i] != ")":
        if text[i] == "\\":
            if i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
                url.append(text[i + 1])
                i += 2
                continue
            raise _reserved("\\")
        url.append(text[i])
        i += 1
    if i >= len(text):
        raise ValueError(f"Can't find end of a URL at byte offset {len(text[:begin].encode())}")
    return "".join(url), i + 1


# Shared by every TelegramUser and queue_update so update ids never collide across tests.
_UPDATE_IDS = itertools.count(900_000_000)
_CALLBACK_IDS = itertools.count(4_611_686_018_427_387_904)
_FILE_IDS = itertools.count(1)


def _file_ids(prefix: str) -> tuple[str, str]:
    """A (file_id, file_unique_id) pair shaped like Telegram's."""
    n = next(_FILE_IDS)
    return f"{prefix}ACAgQAAxkBAAI{n:08X}ZmFrZS1maWxlLWlk", f"AQAD{n:08X}"


@dataclass
class TelegramUser:
    """A citizen's Telegram app: posts real Update JSON to the gateway's webhook."""

    gateway_url: str
    secret: str
    double: TelegramDouble
    user_id: int
    first_name: str = "Ana"
    language_code: str = "en"
    _read: int = field(default=0, init=False, repr=False)  # replies returned so far
    _dates: dict[int, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.double.register_user(self.user)

    @property
    def user(self) -> JSONDict:
        return {"id": self.user_id, "is_bot": False, "first_name": self.first_name,
                "language_code": self.language_code}  # fmt: skip

    @property
    def chat(self) -> JSONDict:
        return {"id": self.user_id, "first_name": self.first_name, "type": "private"}

    # -- building updates -------------------------------------------------------------------

    def message_update(self, update_id: int | None = None, **fields: Any) -> JSONDict:
        """A ``message`` update from this user with ``fields`` (text, photo, contact...)."""
        message_id = self.double.next_message_id(self.user_id)
        date = int(time.time())
        self._dates[message_id] = date
        message = {"message_id": message_id, "from": self.user, "chat": self.chat,
                   "date": date, **fields}  # fmt: skip
        return {"update_id": update_id or next(_UPDATE_IDS), "message": message}

    def text_update(self, text: str, update_id: int | None = None) -> JSONDict:
        """A text message update; a leading /command gets its bot_command entity, as in Telegram."""
        fields: JSONDict = {"text": text}
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            fields["entities"] = [{"type": "bot_command", "offset": 0,
                                   "length": utf16_len(command)}]  # fmt: skip
        return self.message_update(update_id, **fields)

    # -- sending ----------------------------------------------------------------------------

    def post_raw(self, update: JSONDict, secret: str | EllipsisType | None = ...) -> httpx.Response:
        """Post ``update`` to the webhook with this user's secret, another one, or none (None)."""
        token = self.secret if isinstance(secret, EllipsisType) else secret
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers[SECRET_HEADER] = token
        body = {"update_id": update.get("update_id") or next(_UPDATE_IDS), **update}
        return httpx.post(
            self.gateway_url + WEBHOOK_PATH, content=json.dumps(body), headers=headers, timeout=30
        )

    def send_text(self, text: str, update_id: int | None = None) -> httpx.Response:
        return self.post_raw(self.text_update(text, update_id))

    def press(self, button: str | int, message: JSONDict | None = None) -> httpx.Response:
        """Press an inline button (1-based index or its text) on ``message``.

        Without ``message``, the last message to this chat that still shows a keyboard. A
        given message (a Message or a ``sent_to`` entry) keeps its own keyboard even if the
        gateway removed it since, so a stale press can be simulated.
        """
        stored: JSONDict | None = None
        if message is None:
            shown = [m for m in self.double.messages_to(self.user_id) if _keyboard(m)]
            if not shown:
                raise AssertionError(f"no message with an inline keyboard in chat {self.user_id}")
            stored = shown[-1]
        elif "message_id" in message:
            stored = self.double.message(self.user_id, int(message["message_id"]))
        buttons = _keyboard(message) if message is not None and _keyboard(message) else []
        buttons = buttons or (_keyboard(stored) if stored is not None else [])
        chosen = _pick(buttons, button)
        if "callback_data" not in chosen:
            raise AssertionError(f"button {chosen} sends no update (it is not a callback button)")
        if stored is None:  # not a message the double delivered: echo what we were given
            text = str((message or {}).get("text", ""))
            stored = {"message_id": 0, "from": dict(BOT_USER), "chat": self.chat,
                      "date": int(time.time()), "text": text}  # fmt: skip
        query = {"id": str(next(_CALLBACK_IDS)), "from": self.user, "message": stored,
                 "chat_instance": str(-(4_000_000_000_000_000_000 + self.user_id)),
                 "data": chosen["callback_data"]}  # fmt: skip
        return self.post_raw({"callback_query": query})

    def share_contact(
        self, phone_number: str, user_id: int | None = None, first_name: str | None = None
    ) -> httpx.Response:
        """Share a contact: one's own by default; another ``user_id`` is someone else's card."""
        owner = self.user_id if user_id is None else user_id
        name = first_name or (self.first_name if owner == self.user_id else "Bruno")
        contact = {"phone_number": phone_number, "first_name": name, "user_id": owner}
        return self.post_raw(self.message_update(contact=contact))

    def send_photo(self, caption: str | None = None) -> httpx.Response:
        sizes = []
        for width, height, size in ((90, 68, 1532), (320, 240, 18210), (800, 600, 71342)):
            file_id, unique_id = _file_ids("Ag")
            sizes.append({"file_id": file_id, "file_unique_id": unique_id,
                          "file_size": size, "width": width, "height": height})  # fmt: skip
        fields: JSONDict = {"photo": sizes}
        if caption is not None:
            fields["caption"] = caption
        return self.post_raw(self.message_update(**fields))

    def send_voice(self, duration: int = 3) -> httpx.Response:
        file_id, unique_id = _file_ids("Aw")
        voice = {"file_id": file_id, "file_unique_id": unique_id, "duration": duration,
                 "mime_type": "audio/ogg", "file_size": 4200 * duration}  # fmt: skip
        return self.post_raw(self.message_update(voice=voice))

    def send_sticker(self) -> httpx.Response:
        file_id, unique_id = _file_ids("CA")
        sticker = {"file_id": file_id, "file_unique_id": unique_id, "type": "regular",
                   "width": 512, "height": 512, "is_animated": False, "is_video": False,
                   "emoji": "👍", "set_name": "CivicGateTest", "file_size": 23140}  # fmt: skip
        return self.post_raw(self.message_update(sticker=sticker))

    def send_location(self, latitude: float, longitude: float) -> httpx.Response:
        location = {"latitude": latitude, "longitude": longitude}
        return self.post_raw(self.message_update(location=location))

    def edit_text(self, message_id: int, text: str) -> httpx.Response:
        """Edit one of this user's earlier messages: an ``edited_message`` update."""
        now = int(time.time())
        date = self._dates.get(message_id, now)
        edited = {"message_id": message_id, "from": self.user, "chat": self.chat,
                  "date": date, "edit_date": now, "text": text}  # fmt: skip
        return self.post_raw({"edited_message": edited})

    # -- conversation helpers ---------------------------------------------------------------

    def text(self, body: str, timeout: float = 30.0) -> JSONDict:
        """Send ``body`` and return the sendMessage params of the first reply after it."""
        before = len(self.double.sent_to(self.user_id))
        response = self.send_text(body)
        assert response.is_success, (response.status_code, response.text)
        reply = self.double.wait_for_sent(self.user_id, before + 1, timeout)[before]
        self._read = before + 1
        return reply

    def wait_replies(self, count: int, timeout: float = 30.0) -> list[JSONDict]:
        """The next ``count`` replies not yet returned by ``text`` or ``wait_replies``."""
        replies = self.double.wait_for_sent(self.user_id, self._read + count, timeout)
        new = replies[self._read : self._read + count]
        self._read += count
        return new


def _keyboard(message: JSONDict) -> list[JSONDict]:
    markup = message.get("reply_markup")
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    return [button for row in rows or [] for button in row]


def _pick(buttons: list[JSONDict], button: str | int) -> JSONDict:
    texts = [b.get("text") for b in buttons]
    if isinstance(button, int):
        if not 1 <= button <= len(buttons):
            raise AssertionError(f"no button {button}; buttons: {texts}")
        return buttons[button - 1]
    for candidate in buttons:
        if candidate.get("text") == button:
            return candidate
    raise AssertionError(f"no button {button!r}; buttons: {texts}")
