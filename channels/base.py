"""The channel contract, after Rasa's input/output split, made strict with ``abc``.

An input side (:class:`Channel`) authenticates and parses a provider's webhook into an
:class:`IncomingMessage`; an output side (:class:`OutputChannel`) delivers
:class:`OutgoingMessage` objects. Buttons degrade to a numbered text menu on channels
that cannot show them, so every flow can be completed with digits and short words.
An adapter missing a method fails when instantiated, not in production.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, final

from fastapi import APIRouter

from bot.i18n import Localizer

if TYPE_CHECKING:
    from bot.conversation import ConversationService
    from bot.settings import Settings


@dataclass(frozen=True, slots=True)
class Button:
    title: str
    payload: str


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    text: str
    buttons: tuple[Button, ...] = ()

    def as_rest_json(self) -> dict[str, Any]:
        """The shape of Rasa's REST channel, so existing tools can talk to the gateway."""
        body: dict[str, Any] = {"text": self.text}
        if self.buttons:
            body["buttons"] = [{"title": b.title, "payload": b.payload} for b in self.buttons]
        return body


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    channel: str
    sender: str  # the provider's address of the citizen: phone number, chat id, session
    text: str
    external_id: str | None = None  # the provider's message id, to answer duplicates once
    metadata: Mapping[str, Any] = field(default_factory=dict)


def numbered_menu(message: OutgoingMessage, localizer: Localizer) -> str:
    """``text`` followed by "Reply 1 for …" lines: buttons for channels without buttons."""
    if not message.buttons:
        return message.text
    lines = [message.text]
    for number, button in enumerate(message.buttons, start=1):
        lines.append(
            localizer.gettext("Reply {number} for {option}").format(
                number=number, option=button.title
            )
        )
    return "\n".join(lines)


class OutputChannel(abc.ABC):
    """Delivers replies to one recipient."""

    supports_buttons: ClassVar[bool] = False

    @final
    async def send(self, message: OutgoingMessage, localizer: Localizer) -> None:
        if message.buttons and self.supports_buttons:
            await self._send_with_buttons(message)
        else:
            await self._send_text(numbered_menu(message, localizer))

    @abc.abstractmethod
    async def _send_text(self, text: str) -> None: ...

    async def _send_with_buttons(self, message: OutgoingMessage) -> None:
        raise NotImplementedError(f"{type(self).__name__} says it supports buttons")


class Channel(abc.ABC):
    """A channel's inbound side: its routes, how it authenticates, what it redacts."""

    name: ClassVar[str]
    # Keys of the provider's payload that hold personal data, masked in logs.
    redacted_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, settings: Settings, conversations: ConversationService) -> None:
        self.settings = settings
        self.conversations = conversations

    @classmethod
    def is_configured(cls, settings: Settings) -> bool:
        """Channels needing credentials are mounted only when these are set."""
        return True

    async def initialize(self) -> None:
        """Open clients (HTTP sessions to the provider); called at application start."""

    async def shutdown(self) -> None:
        """Close what :meth:`initialize` opened."""

    @abc.abstractmethod
    def router(self) -> APIRouter:
        """The routes this channel serves, mounted under ``/channels/{name}``."""

    def root_routes(self) -> list[tuple[str, Callable[..., Any]]]:
        """Routes outside ``/channels/{name}`` (the web chat page at ``/``)."""
        return []
