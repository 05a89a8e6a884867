"""The REST channel: Rasa's REST shape, for tests, integrations and existing tools.

``POST /channels/rest/webhook`` with ``{"sender", "message"}`` answers the bot's replies
as a JSON list of ``{"text", "buttons"?}``. It is meant for trusted callers behind the
deployment's own access control (the sender id is taken as given).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from channels.base import Channel, IncomingMessage
from channels.limits import MAX_TEXT_CHARS, StorableId, StorableText


class RestMessage(BaseModel):
    """Fields not named here are ignored; a lone surrogate or NUL in ``message`` becomes
    U+FFFD, in ``sender`` or ``message_id`` it is refused (422)."""

    sender: Annotated[StorableId, Field(min_length=1, max_length=128)]
    message: Annotated[StorableText, Field(max_length=MAX_TEXT_CHARS)] = ""
    message_id: Annotated[StorableId | None, Field(max_length=128)] = None


class RestChannel(Channel):
    name = "rest"
    redacted_keys = frozenset({"sender", "message"})

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/webhook")
        async def webhook(body: Annotated[RestMessage, Body()]) -> list[dict[str, Any]]:
            replies = await self.conversations.handle(
                IncomingMessage(
                    channel=self.name,
                    sender=body.sender,
                    text=body.message,
                    external_id=body.message_id,
                )
            )
            self.services.metrics.messages_sent.labels(self.name).inc(len(replies))
            return [reply.as_rest_json() for reply in replies]

        return router
