"""A Telegram ``Update`` as the gateway's :class:`IncomingMessage`.

Everything becomes a stored message of the chat (so it is processed in order and
de-duplicated by ``update_id``); what is not plain text is described in
``provider_data["kind"]``: ``text``, ``start``, ``choice`` (a pressed option),
``contact``, ``location``, ``media``, ``edited``, ``blocked`` / ``unblocked``.
"""

from __future__ import annotations

from typing import Any

from telegram import ChatMember, Message, Update
from telegram.constants import ChatType

from channels.base import IncomingMessage
from channels.telegram.sender import provider_id

CHANNEL = "telegram"


def _incoming(chat_id: int, update: Update, text: str, **data: Any) -> IncomingMessage:
    media = 1 if data.get("kind") == "media" else 0
    return IncomingMessage(
        channel=CHANNEL,
        sender=str(chat_id),
        text=text,
        external_id=str(update.update_id),
        metadata={"provider_data": data, "media_count": media},
    )


def incoming_from_update(update: Update) -> IncomingMessage | None:
    """The message to store, or None for updates the gateway does not serve (groups,
    channel posts, inline queries)."""
    if (query := update.callback_query) is not None:
        menu = query.message
        chat_id = menu.chat.id if menu is not None else query.from_user.id
        return _incoming(
            chat_id,
            update,
            query.data or "",
            kind="choice",
            choice_id=query.id,
            menu_message=provider_id(chat_id, menu.message_id) if menu is not None else None,
        )
    if (member := update.my_chat_member) is not None:
        if member.chat.type != ChatType.PRIVATE:
            return None
        blocked = member.new_chat_member.status in (ChatMember.BANNED, ChatMember.LEFT)
        return _incoming(member.chat.id, update, "", kind="blocked" if blocked else "unblocked")
    if (edited := update.edited_message) is not None:
        if edited.chat.type != ChatType.PRIVATE:
            return None
        return _incoming(edited.chat.id, update, "", kind="edited")
    message = update.message
    if message is None or message.chat.type != ChatType.PRIVATE:
        return None
    return _from_message(message, update)


def _from_message(message: Message, update: Update) -> IncomingMessage:
    chat_id = message.chat.id
    if (contact := message.contact) is not None:
        own = message.from_user is not None and contact.user_id == message.from_user.id
        return _incoming(chat_id, update, "", kind="contact", phone=contact.phone_number, own=own)
    if (location := message.location) is not None:
        return _incoming(
            chat_id,
            update,
            "",
            kind="location",
            latitude=location.latitude,
            longitude=location.longitude,
        )
    if message.text is not None:
        kind = "start" if message.text.split(maxsplit=1)[:1] == ["/start"] else "text"
        # The app's language: a hint until the citizen's language is known.
        language = message.from_user.language_code if message.from_user else None
        return _incoming(chat_id, update, message.text, kind=kind, language_code=language)
    return _incoming(chat_id, update, message.caption or "", kind="media")
