"""One messenger turn (Telegram): options as keyboards, pressed options acknowledged and
answered keyboards removed, shared contacts and locations, blocked users left alone.

Runs in the background like an SMS turn (see :mod:`bot.inbound`): the webhook has stored
the update and answered Telegram already.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.actions.application import current_field
from bot.conversation import Accepted, Participant, load_sender
from bot.db.models import (
    LATEST_FIRST,
    ApplicationDraft,
    ChannelIdentity,
    Conversation,
    Delivery,
    Direction,
    Message,
    utcnow,
)
from bot.i18n import N_, Localizer, localizer
from bot.inbound import Lease
from bot.linking import link_phone
from bot.outbox import Outbox, outbox_row
from bot.privacy import mask
from bot.sms import MEDIA_ONLY
from channels.base import (
    Button,
    MessengerOutput,
    OutgoingMessage,
    contact_keyboard,
    inline_keyboard,
)
from channels.sms.phone import InvalidPhoneNumberError, to_e164
from channels.telegram.text import split_text
from service_connectors.answers import match_option

if TYPE_CHECKING:
    from channels.base import ChannelServices

logger = logging.getLogger(__name__)

ALREADY_ANSWERED = N_("This question was already answered.")
NO_LONGER_AVAILABLE = N_("That option is no longer available.")
EDITED = N_("I only read new messages. Please send the correction as a new message.")
SHARE_PHONE = N_("Share my phone number")
SHARE_PHONE_OFFER = N_(
    "Applied by SMS before? Share your phone number to follow those applications here too."
)
NOT_OWN_CONTACT = N_("Please share your own phone number, with the button below.")
PHONE_LINKED = N_("Thank you. Applications made by SMS from this number are shown here too.")
PHONE_UNUSABLE = N_("I cannot use this phone number.")
LOCATION_UNUSED = N_("Thank you. I use a location when I ask where something is.")
LOCATION_FIELDS = frozenset({"location"})


@dataclass
class Reply:
    text: str
    keyboard: dict[str, Any] | None = None
    buttons: tuple[Button, ...] = ()  # kept in the transcript: a pressed number picks one


@dataclass
class Effects:
    """Provider calls made after the turn is committed."""

    answer: tuple[str, str | None] | None = None  # callback query id, notice
    close: str | None = None  # provider id of a message whose keyboard goes away
    deliveries: list[Delivery] = field(default_factory=list)


class MessengerTurns:
    def __init__(self, services: ChannelServices, channel: str, sender: MessengerOutput) -> None:
        self.settings = services.settings
        self.conversations = services.conversations
        self.sessions = services.conversations.sessions
        self.catalogue = services.catalogue
        self.outbox = services.outbox
        self.channel = channel
        self.sender = sender

    async def handle(self, message: Message, lease: Lease) -> None:
        effects = Effects()
        async with self.sessions() as session:
            participant, conversation, identity = await load_sender(
                session, message.conversation_id, self.settings.default_language
            )
            words = localizer(participant.language)
            data = message.provider_data or {}
            kind = str(data.get("kind", "text"))
            identity.unreachable_at = utcnow() if kind == "blocked" else None
            replies = await self._before_dialogue(
                session, participant, message, data, effects, words
            )
            if replies is None:
                await session.commit()  # release the database while the engine thinks
                replies = await self._replies(session, participant, conversation, message, words)
            await self._finish(session, participant, identity, message, replies, effects)
            await lease.settle(session)
            await session.commit()
        if effects.answer is not None:
            await self.sender.answer_choice(*effects.answer)
        if effects.close is not None:
            await self.sender.close_keyboard(effects.close)
        for delivery in effects.deliveries:
            await self.outbox.send_claimed(delivery)

    async def _before_dialogue(
        self,
        session: AsyncSession,
        participant: Participant,
        message: Message,
        data: dict[str, Any],
        effects: Effects,
        words: Localizer,
    ) -> list[Reply] | None:
        """Keyboards and stale presses; ``[]`` or replies to end the turn here, None to
        go on to the dialogue."""
        kind = data.get("kind", "text")
        if kind in ("blocked", "unblocked"):
            return []
        open_keyboard = await session.scalar(
            select(Delivery)
            .where(
                Delivery.conversation_id == message.conversation_id,
                Delivery.keyboard.is_not(None),
                Delivery.provider_id.is_not(None),
            )
            .order_by(Delivery.id.desc())
            .limit(1)
        )
        if open_keyboard is not None and open_keyboard.keyboard_closed:
            open_keyboard = None
        if kind == "choice":
            current = open_keyboard is not None and data.get("menu_message") == (
                open_keyboard.provider_id
            )
            effects.answer = (str(data.get("choice_id")), None)
            if not current:  # a button of a question no longer open: never the engine's
                replies = await self._late_press(
                    session, participant, message, data, effects, words
                )
                if replies:
                    self._close(open_keyboard, effects)  # its question is asked again
                return replies
        self._close(open_keyboard, effects)  # answered (pressed or typed): take it away
        return None

    @staticmethod
    def _close(open_keyboard: Delivery | None, effects: Effects) -> None:
        if open_keyboard is not None and (open_keyboard.keyboard or {}).get("inline"):
            open_keyboard.keyboard_closed = True
            effects.close = open_keyboard.provider_id

    async def _late_press(
        self,
        session: AsyncSession,
        participant: Participant,
        message: Message,
        data: dict[str, Any],
        effects: Effects,
        words: Localizer,
    ) -> list[Reply]:
        """A press on the keyboard of a question that was answered since (its keyboard
        could not be taken away in time, or a second device shows it), taken by what it
        meant: the option that question was answered with (pressed, its number or its
        words typed) is only acknowledged; another is no longer available, and the open
        question (the bot's last message, if it has options or an application is in
        progress) is asked again."""
        old = await session.scalar(
            select(Delivery).where(
                Delivery.channel == self.channel,
                Delivery.provider_id == str(data.get("menu_message")),
            )
        )
        titles = [str(t) for t in ((old.keyboard or {}).get("inline") or [])] if old else []
        pressed = match_option(message.text, titles) if message.text.isdigit() else None
        answer = None
        if old is not None:
            answer = await session.scalar(
                select(Message.text)
                .where(
                    Message.conversation_id == message.conversation_id,
                    Message.direction == Direction.INBOUND,
                    Message.created_at >= old.created_at,
                    Message.id != message.id,
                )
                .order_by(Message.id)
                .limit(1)
            )
        if pressed is not None and answer is not None and match_option(answer, titles) == pressed:
            effects.answer = (str(data.get("choice_id")), words.gettext(ALREADY_ANSWERED))
            return []
        replies = [Reply(words.gettext(NO_LONGER_AVAILABLE))]
        question = await session.scalar(
            select(Message)
            .where(
                Message.conversation_id == message.conversation_id,
                Message.direction == Direction.OUTBOUND,
            )
            .order_by(*LATEST_FIRST)
            .limit(1)
        )
        in_progress = await session.get(ApplicationDraft, participant.rasa_sender) is not None
        if question is not None and (question.buttons or in_progress):
            buttons = tuple(Button(b["title"], b["payload"]) for b in question.buttons or [])
            again = OutgoingMessage(question.text, buttons)
            replies.append(Reply(question.text, inline_keyboard(again), buttons))
        return replies

    async def _replies(
        self,
        session: AsyncSession,
        participant: Participant,
        conversation: Conversation,
        message: Message,
        words: Localizer,
    ) -> list[Reply]:
        data = message.provider_data or {}
        kind = data.get("kind", "text")
        if kind == "edited":
            return [Reply(words.gettext(EDITED))]
        if kind == "media":
            return [Reply(words.gettext(MEDIA_ONLY))]
        if kind == "contact":
            return await self._contact(session, conversation, data, words)
        if kind == "location":
            if not await self._asks_location(session, participant):
                return [Reply(words.gettext(LOCATION_UNUSED))]
            text = f"{float(data['latitude']):.5f}, {float(data['longitude']):.5f}"
            return self._from_dialogue(
                await self.conversations.respond(participant, text, None, session)
            )
        if kind == "start":
            hint = data.get("language_code")
            replies = self._from_dialogue(
                await self.conversations.respond(participant, "hi", hint, session)
            )
            keyboard = contact_keyboard(words.gettext(SHARE_PHONE))
            return [*replies, Reply(words.gettext(SHARE_PHONE_OFFER), keyboard)]
        hint = data.get("language_code")
        return self._from_dialogue(
            await self.conversations.respond(participant, message.text, hint, session)
        )

    @staticmethod
    def _from_dialogue(messages: list[OutgoingMessage]) -> list[Reply]:
        return [Reply(m.text, inline_keyboard(m), m.buttons) for m in messages]

    async def _contact(
        self,
        session: AsyncSession,
        conversation: Conversation,
        data: dict[str, Any],
        words: Localizer,
    ) -> list[Reply]:
        if not data.get("own"):  # someone else's card: proves nothing about the sender
            logger.warning("refused a contact that is not the sender's own")
            keyboard = contact_keyboard(words.gettext(SHARE_PHONE))
            return [Reply(words.gettext(NOT_OWN_CONTACT), keyboard)]
        try:
            phone = to_e164(str(data.get("phone", "")), self.settings.default_phone_region)
        except InvalidPhoneNumberError:
            return [Reply(words.gettext(PHONE_UNUSABLE))]
        await link_phone(session, conversation, phone)
        logger.info("conversation %s linked to phone %s", conversation.id, mask(phone))
        return [Reply(words.gettext(PHONE_LINKED))]

    async def _asks_location(self, session: AsyncSession, participant: Participant) -> bool:
        """Whether the open application's next question is a location."""
        draft = await session.get(ApplicationDraft, participant.rasa_sender)
        service = self.catalogue.get(draft.service_code) if draft else None
        if draft is None or service is None:
            return False
        asked = current_field(service, draft)
        return asked is not None and asked.name in LOCATION_FIELDS

    async def _finish(
        self,
        session: AsyncSession,
        participant: Participant,
        identity: ChannelIdentity,
        message: Message,
        replies: list[Reply],
        effects: Effects,
    ) -> None:
        """Transcript, one claimed outbox row per message part (the keyboard on the last
        part), and "processed", in the caller's transaction."""
        outgoing = [OutgoingMessage(r.text, r.buttons) for r in replies]
        accepted = Accepted(participant, message.id)
        await self.conversations.record_replies(
            participant, self.channel, outgoing, accepted, session
        )
        rows: list[Delivery] = []
        for reply in replies:
            parts = split_text(reply.text)
            for number, part in enumerate(parts, start=1):
                rows.append(
                    outbox_row(
                        participant.conversation_id,
                        identity,
                        part,
                        keyboard=reply.keyboard if number == len(parts) else None,
                    )
                )
        await Outbox.store_claimed(session, rows)
        effects.deliveries = rows
