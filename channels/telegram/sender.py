"""Sending through the Telegram Bot API with python-telegram-bot's ``Bot``."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from bot.settings import Settings
from channels.base import DeliveryError, MessengerOutput
from channels.telegram.text import escape

logger = logging.getLogger(__name__)
# Opt in to PTB's coming behaviour (time periods as timedelta, e.g. RetryAfter.retry_after);
# without it PTB warns about its own deprecation each time Telegram asks us to slow down.
os.environ.setdefault("PTB_TIMEDELTA", "1")

TELEGRAM_API = "https://api.telegram.org"
Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove


def make_bot(settings: Settings) -> Bot:
    """PTB's Bot for the configured token, talking to ``TELEGRAM_API_BASE_URL`` if set."""
    assert settings.telegram_bot_token is not None
    api = str(settings.telegram_api_base_url or TELEGRAM_API).rstrip("/")
    return Bot(settings.telegram_bot_token.get_secret_value(), base_url=f"{api}/bot")


def markup(keyboard: Mapping[str, Any] | None) -> Markup | None:
    """Options as an inline keyboard (pressing one sends its number); a request for the
    user's phone number as a one-time reply keyboard."""
    if keyboard is None:
        return None
    if "inline" in keyboard:
        return InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(str(title), callback_data=str(number))]
                for number, title in enumerate(keyboard["inline"], start=1)
            ]
        )
    if "contact" in keyboard:
        button = KeyboardButton(str(keyboard["contact"]), request_contact=True)
        return ReplyKeyboardMarkup([[button]], one_time_keyboard=True, resize_keyboard=True)
    return None


def provider_id(chat_id: int | str, message_id: int) -> str:
    """Telegram message ids are per chat: ours carry both."""
    return f"{chat_id}:{message_id}"


class TelegramSender(MessengerOutput):
    def __init__(self, settings: Settings) -> None:
        self.bot = make_bot(settings)

    async def initialize(self) -> None:
        try:
            await self.bot.initialize()  # getMe: the token is checked at start
        except TelegramError as exc:  # Telegram down at start: requests retry later
            logger.warning("Telegram getMe failed at start (%s)", type(exc).__name__)

    async def shutdown(self) -> None:
        await self.bot.shutdown()

    async def _deliver(
        self, recipient: str, body: str, keyboard: Mapping[str, Any] | None = None
    ) -> str:
        try:
            message = await self.bot.send_message(
                chat_id=int(recipient),
                text=escape(body),
                parse_mode=ParseMode.MARKDOWN_V2,
                reply_markup=markup(keyboard),
            )
        except Forbidden as exc:  # blocked by the user, or the chat is gone
            raise DeliveryError(str(exc), retriable=False, code="403", unreachable=True) from exc
        except RetryAfter as exc:
            wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            raise DeliveryError(str(exc), retriable=True, code="429", retry_after=seconds) from exc
        except BadRequest as exc:
            raise DeliveryError(str(exc), retriable=False, code="400") from exc
        return provider_id(recipient, message.message_id)

    async def answer_choice(self, choice_id: str, notice: str | None = None) -> None:
        try:
            await self.bot.answer_callback_query(choice_id, text=notice)
        except TelegramError as exc:  # too late to answer (15 s): only the spinner stays
            logger.info("callback query not answered: %s", type(exc).__name__)

    async def close_keyboard(self, message_id: str) -> None:
        chat_id, _, number = message_id.partition(":")
        try:
            await self.bot.edit_message_reply_markup(
                chat_id=int(chat_id), message_id=int(number), reply_markup=None
            )
        except TelegramError as exc:  # already edited or deleted: nothing to remove
            logger.info("keyboard not removed: %s", type(exc).__name__)
