"""The Telegram channel: webhook in (secret-token checked), replies out through PTB."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, ClassVar

from fastapi import APIRouter, Header, HTTPException, Request, Response

from bot.messenger import MessengerTurns
from bot.settings import Settings
from channels.base import Channel
from channels.telegram.sender import TelegramSender
from channels.telegram.updates import (
    CHANNEL,
    SERVED_UPDATES,
    WEBHOOK_OPENAPI,
    MalformedUpdateError,
    parse_update,
)

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
ALLOWED_UPDATES = SERVED_UPDATES


class TelegramChannel(Channel):
    name = CHANNEL
    redacted_keys: ClassVar[frozenset[str]] = frozenset(
        {"text", "caption", "contact", "phone_number", "location", "first_name", "last_name",
         "username", "from", "chat"}
    )  # fmt: skip

    @classmethod
    def is_configured(cls, settings: Settings) -> bool:
        return settings.telegram_enabled

    async def initialize(self) -> None:
        secret = self.settings.telegram_webhook_secret
        assert secret is not None  # the settings refuse a token without a secret
        self.secret = secret.get_secret_value().encode()
        self.sender = TelegramSender(self.settings)
        await self.sender.initialize()
        self.services.outbox.register(self.name, self.sender)
        turns = MessengerTurns(self.services, self.name, self.sender)
        self.services.inbound.register(self.name, turns.handle)

    async def shutdown(self) -> None:
        await self.sender.shutdown()

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("", openapi_extra=WEBHOOK_OPENAPI)
        async def webhook(
            request: Request,
            secret: Annotated[str | None, Header(alias=SECRET_HEADER)] = None,
        ) -> Response:
            if secret is None or not hmac.compare_digest(secret.encode(), self.secret):
                logger.warning("refused a Telegram webhook with a wrong secret token")
                raise HTTPException(403, "invalid secret token")
            try:
                incoming = parse_update(await request.body(), self.sender.bot)
            except MalformedUpdateError as exc:
                logger.warning("refused a Telegram webhook: %s", exc)
                raise HTTPException(400, "not a Telegram update") from exc
            if incoming is not None:
                await self.accept_for_later(incoming)
            return Response(status_code=200)

        return router
