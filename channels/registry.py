"""The explicit channel registry: unique names, only configured channels are mounted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from channels.base import Channel
from channels.rest import RestChannel
from channels.sms.twilio import TwilioSmsChannel
from channels.telegram.channel import TelegramChannel
from channels.webchat import WebChatChannel

if TYPE_CHECKING:
    from channels.base import ChannelServices

CHANNEL_CLASSES: tuple[type[Channel], ...] = (
    RestChannel,
    WebChatChannel,
    TwilioSmsChannel,
    TelegramChannel,
)

REGISTRY: dict[str, type[Channel]] = {cls.name: cls for cls in CHANNEL_CLASSES}
assert len(REGISTRY) == len(CHANNEL_CLASSES), "channel names must be unique"


def enabled_channels(services: ChannelServices) -> list[Channel]:
    """An instance of every channel whose configuration is present."""
    return [cls(services) for cls in CHANNEL_CLASSES if cls.is_configured(services.settings)]
