"""A Telegram ``Update`` as the gateway's :class:`IncomingMessage`.

Everything becomes a stored message of the chat (so it is processed in order and
de-duplicated by ``update_id``); what is not plain text is described in
``provider_data["kind"]``: ``text``, ``start``, ``choice`` (a pressed option),
``contact``, ``location``, ``media``, ``edited``, ``blocked`` / ``unblocked``.

PTB's parsers trust their input, so what is not an update Telegram would send (no chat, a
date past the year 9999, a number where text goes) is refused with
:class:`MalformedUpdateError` here, never half-stored; the text of one that is, is made
storable (:mod:`channels.limits`).
"""

from __future__ import annotations

import math
from typing import Any

from telegram import Bot, ChatMember, Message, Update
from telegram.constants import ChatType

from channels import limits
from channels.base import IncomingMessage
from channels.telegram.sender import provider_id

CHANNEL = "telegram"
# The update kinds the webhook asks for (``allowed_updates``) and reads.
SERVED_UPDATES = ("message", "edited_message", "callback_query", "my_chat_member")
SERVED_FIELDS = frozenset({"update_id", *SERVED_UPDATES})
MAX_ID = 2**63 - 1  # Telegram's ids (updates, chats, users, messages) fit in 64 bits


_ID = {"type": "integer"}
_TEXT = {"type": "string"}
_USER = {
    "type": "object",
    "required": ["id", "is_bot", "first_name"],
    "properties": {
        "id": _ID,
        "is_bot": {"type": "boolean"},
        "first_name": _TEXT,
        "language_code": _TEXT,
    },
}
_CHAT = {
    "type": "object",
    "required": ["id", "type"],
    "properties": {"id": _ID, "type": {"enum": ["private", "group", "supergroup", "channel"]}},
}
_MESSAGE = {
    "type": "object",
    "required": ["message_id", "date", "chat"],
    "properties": {
        "message_id": _ID,
        "date": _ID,
        "chat": _CHAT,
        "from": _USER,
        "text": _TEXT,
        "caption": _TEXT,
        "contact": {
            "type": "object",
            "required": ["phone_number"],
            "properties": {"phone_number": _TEXT, "user_id": _ID, "first_name": _TEXT},
        },
        "location": {
            "type": "object",
            "required": ["latitude", "longitude"],
            "properties": {"latitude": {"type": "number"}, "longitude": {"type": "number"}},
        },
    },
}
# The part of Bot API's Update the gateway reads (ALLOWED_UPDATES), for the OpenAPI.
UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["update_id"],
    "properties": {
        "update_id": _ID, "message": _MESSAGE, "edited_message": _MESSAGE,
        "callback_query": {"type": "object", "required": ["id", "from"],
                           "properties": {"id": _TEXT, "from": _USER, "message": _MESSAGE,
                                          "data": _TEXT, "chat_instance": _TEXT}},
    },
}  # fmt: skip
WEBHOOK_OPENAPI = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": UPDATE_SCHEMA}}}
}


class MalformedUpdateError(ValueError):
    """Not an update Telegram would send; says what is wrong (never the content)."""


def parse_update(body: bytes, bot: Bot) -> IncomingMessage | None:
    """The message a webhook's body carries, or None for updates the gateway does not
    serve; :class:`MalformedUpdateError` for a body that is not a Telegram update."""
    try:
        data = limits.loads(body)
    except ValueError as exc:
        raise MalformedUpdateError("not JSON") from exc
    if not isinstance(data, dict):
        raise MalformedUpdateError("not an object")
    # Only the kinds of update the gateway serves are parsed: a field of a kind it does
    # not serve (or one newer than this PTB) cannot make a served update unreadable.
    served = {key: value for key, value in data.items() if key in SERVED_FIELDS}
    try:
        update = Update.de_json(served, bot)
    except Exception as exc:  # whatever PTB raises on a forged update: it is not one
        raise MalformedUpdateError(f"unreadable ({type(exc).__name__})") from exc
    if update is None:
        raise MalformedUpdateError("empty")
    return incoming_from_update(update)


def _id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_ID:
        raise MalformedUpdateError(f"{what} is not an id")
    return value


def _text(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedUpdateError(f"{what} is not text")
    return value


def _coordinate(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedUpdateError(f"{what} is not a number")
    return float(value)


def _chat_id(message: Any, what: str) -> int:
    chat = getattr(message, "chat", None)
    if chat is None:
        raise MalformedUpdateError(f"{what} has no chat")
    return _id(chat.id, "chat id")


def _incoming(chat_id: int, update: Update, text: str, **data: Any) -> IncomingMessage:
    media = 1 if data.get("kind") == "media" else 0
    return IncomingMessage(
        channel=CHANNEL,
        sender=str(chat_id),
        text=text,
        external_id=str(_id(update.update_id, "update_id")),
        metadata={"provider_data": data, "media_count": media},
    )


def incoming_from_update(update: Update) -> IncomingMessage | None:
    """The message to store, or None for updates the gateway does not serve (groups,
    channel posts, inline queries)."""
    if (query := update.callback_query) is not None:
        menu = query.message
        if menu is not None:
            chat_id = _chat_id(menu, "pressed message")
        elif query.from_user is not None:
            chat_id = _id(query.from_user.id, "user id")
        else:
            raise MalformedUpdateError("callback query from nobody")
        return _incoming(
            chat_id,
            update,
            _text(query.data, "callback data"),
            kind="choice",
            choice_id=_text(query.id, "callback query id"),
            menu_message=(
                provider_id(chat_id, _id(menu.message_id, "message id"))
                if menu is not None
                else None
            ),
        )
    if (member := update.my_chat_member) is not None:
        chat_id = _chat_id(member, "member update")
        if member.chat.type != ChatType.PRIVATE:
            return None
        if member.new_chat_member is None:
            raise MalformedUpdateError("member update without the new member")
        blocked = member.new_chat_member.status in (ChatMember.BANNED, ChatMember.LEFT)
        return _incoming(chat_id, update, "", kind="blocked" if blocked else "unblocked")
    if (edited := update.edited_message) is not None:
        chat_id = _chat_id(edited, "edited message")
        if edited.chat.type != ChatType.PRIVATE:
            return None
        return _incoming(chat_id, update, "", kind="edited")
    message = update.message
    if message is None:
        return None
    chat_id = _chat_id(message, "message")
    if message.chat.type != ChatType.PRIVATE:
        return None
    return _from_message(chat_id, message, update)


def _from_message(chat_id: int, message: Message, update: Update) -> IncomingMessage:
    if (contact := message.contact) is not None:
        own = message.from_user is not None and contact.user_id == message.from_user.id
        phone = _text(contact.phone_number, "phone number")
        return _incoming(chat_id, update, "", kind="contact", phone=phone, own=own)
    if (location := message.location) is not None:
        return _incoming(
            chat_id,
            update,
            "",
            kind="location",
            latitude=_coordinate(location.latitude, "latitude"),
            longitude=_coordinate(location.longitude, "longitude"),
        )
    if message.text is not None:
        text = _text(message.text, "text")
        kind = "start" if text.split(maxsplit=1)[:1] == ["/start"] else "text"
        # The app's language: a hint until the citizen's language is known.
        language = message.from_user.language_code if message.from_user else None
        language = language if isinstance(language, str) else None
        return _incoming(chat_id, update, text, kind=kind, language_code=language)
    return _incoming(chat_id, update, _text(message.caption, "caption"), kind="media")
