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
from bot.metrics import DETACHED, GatewayMetrics

if TYPE_CHECKING:
    from bot.conversation import ConversationService
    from bot.inbound import InboundWorker
    from bot.outbox import Outbox
    from bot.settings import Settings
    from service_connectors.catalogue import Catalogue


@dataclass(frozen=True, slots=True)
class ChannelServices:
    """What the gateway lends a channel: where messages go in and replies go out."""

    settings: Settings
    conversations: ConversationService
    inbound: InboundWorker  # background, ordered processing (webhook channels)
    outbox: Outbox  # provider deliveries with retries (register an OutputChannel)
    catalogue: Catalogue  # the services (a messenger location may answer a location field)
    metrics: GatewayMetrics = DETACHED  # what a channel counts (replies it answers itself)


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
        lines.append(menu_line(localizer, number, button.title))
    return "\n".join(lines)


def menu_line(localizer: Localizer, number: int, option: str) -> str:
    return localizer.gettext("Reply {number} for {option}").format(number=number, option=option)


class DeliveryError(Exception):
    """A provider refused or failed a send; says whether trying again can help."""

    def __init__(
        self,
        message: str,
        *,
        retriable: bool,
        code: str | None = None,
        opted_out: bool = False,
        unreachable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.code = code
        self.opted_out = opted_out  # the recipient unsubscribed at the provider
        self.unreachable = unreachable  # e.g. blocked the bot: stop until they write again
        self.retry_after = retry_after  # seconds the provider asked us to wait (rate limit)


class OutputChannel(abc.ABC):
    """Delivers text to a recipient through a provider's API (SMS, messengers).

    Shaped like python-telegram-bot's ``BaseRequest``: a lifecycle, one ``@final`` public
    method owning error mapping, one abstract hook speaking the provider's protocol.
    Replies are composed (numbered menus, paging) before they reach it.
    """

    async def initialize(self) -> None:
        """Open the provider client."""

    async def shutdown(self) -> None:
        """Close what :meth:`initialize` opened."""

    @final
    async def deliver(
        self, recipient: str, body: str, keyboard: Mapping[str, Any] | None = None
    ) -> str:
        """Send ``body`` (with ``keyboard`` where the channel has keyboards, see
        :func:`inline_keyboard`); the provider's message id. Raises :class:`DeliveryError`
        only."""
        try:
            return await self._deliver(recipient, body, keyboard)
        except DeliveryError:
            raise
        except Exception as exc:  # an unknown failure of the provider client: retry later
            raise DeliveryError(type(exc).__name__, retriable=True) from exc

    @abc.abstractmethod
    async def _deliver(
        self, recipient: str, body: str, keyboard: Mapping[str, Any] | None
    ) -> str: ...


class MessengerOutput(OutputChannel):
    """An output channel with keyboards: a pressed option is acknowledged, and the
    keyboard of an answered question is taken away so it cannot be pressed again."""

    @abc.abstractmethod
    async def answer_choice(self, choice_id: str, notice: str | None = None) -> None:
        """Acknowledge a pressed option (stops the client's spinner), with a short notice."""

    @abc.abstractmethod
    async def close_keyboard(self, message_id: str) -> None:
        """Remove the options from a message already sent (its provider id)."""


def inline_keyboard(message: OutgoingMessage) -> dict[str, Any] | None:
    """The stored form of a message's options: titles, answered with their number."""
    return {"inline": [b.title for b in message.buttons]} if message.buttons else None


def contact_keyboard(label: str) -> dict[str, Any]:
    """A button asking the messenger to share the user's own phone number."""
    return {"contact": label}


class Channel(abc.ABC):
    """A channel's inbound side: its routes, how it authenticates, what it redacts."""

    name: ClassVar[str]
    # Keys of the provider's payload that hold personal data, masked in logs.
    redacted_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, services: ChannelServices) -> None:
        self.services = services
        self.settings = services.settings
        self.conversations = services.conversations

    @classmethod
    def is_configured(cls, settings: Settings) -> bool:
        """Channels needing credentials are mounted only when these are set."""
        return True

    async def initialize(self) -> None:
        """Open clients (HTTP sessions to the provider); called at application start."""

    async def shutdown(self) -> None:
        """Close what :meth:`initialize` opened."""

    async def accept_for_later(self, incoming: IncomingMessage) -> None:
        """A webhook's message: stored (a repeated provider id once), then processed in
        the background, in order, by whichever drain holds its conversation."""
        inbound = self.services.inbound
        accepted = await self.conversations.accept(incoming, claim=inbound.claim)
        if accepted is not None and accepted.lease is not None:  # else the holder's
            inbound.schedule(accepted.lease)

    @abc.abstractmethod
    def router(self) -> APIRouter:
        """The routes this channel serves, mounted under ``/channels/{name}``."""

    def root_routes(self) -> list[tuple[str, Callable[..., Any]]]:
        """Routes outside ``/channels/{name}`` (the web chat page at ``/``)."""
        return []
