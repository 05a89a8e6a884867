"""The explicit channel registry: unique names, only configured channels are mounted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from channels.base import Channel
from channels.rest import RestChannel
from channels.webchat import WebChatChannel

if TYPE_CHECKING:
    from bot.conversation import ConversationService
    from bot.settings import Settings

CHANNEL_CLASSES: tuple[type[Channel], ...] = (RestChannel, WebChatChannel)

REGISTRY: dict[str, type[Channel]] = {cls.name: cls for cls in CHANNEL_CLASSES}
assert len(REGISTRY) == len(CHANNEL_CLASSES), "channel names must be unique"


def enabled_channels(settings: Settings, conversations: ConversationService) -> list[Channel]:
    return [cls(settings, conversations) for cls in CHANNEL_CLASSES if cls.is_configured(settings)]
