"""Conversation orchestration: who is writing, store the message, ask Rasa, store replies.

Stateless by design: everything about a conversation is in the database or in Rasa's
tracker store, so any replica can take the next message. The inbound message is
committed before it is processed, and a provider message id seen before is answered once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import ChannelIdentity, Citizen, Conversation, Direction, Message, utcnow
from bot.i18n import N_, Localizer, localizer
from bot.privacy import mask
from bot.rasa_client import RasaClient, RasaUnavailable
from bot.settings import Settings
from channels.base import IncomingMessage, OutgoingMessage

logger = logging.getLogger(__name__)

EMPTY_MESSAGE = N_("I received an empty message. How can I help? Reply HELP to see what I can do.")
TOO_LONG_MESSAGE = N_(
    "Your message is too long for me. Please send a shorter one (up to {limit} characters)."
)
NO_WORDS_MESSAGE = N_("I can only read words. Please write what you need, or reply HELP.")
ENGINE_DOWN_MESSAGE = N_(
    "Sorry, I cannot answer right now. Your message is saved. Please try again in a few minutes."
)


@dataclass(frozen=True, slots=True)
class Participant:
    citizen_id: str
    identity_id: str
    conversation_id: str
    language: str


class ConversationService:
    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], rasa: RasaClient
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.rasa = rasa

    async def handle(self, incoming: IncomingMessage) -> list[OutgoingMessage]:
        """Process one inbound message; the replies, or none for a duplicate."""
        participant = await self.participant(incoming.channel, incoming.sender)
        if not await self._store_inbound(participant, incoming):
            logger.info("duplicate message %s ignored", incoming.external_id)
            return []
        replies = await self._reply(participant, incoming.text)
        await self._store_outbound(participant, incoming.channel, replies)
        return replies

    async def _reply(self, participant: Participant, text: str) -> list[OutgoingMessage]:
        words = localizer(participant.language)
        problem = self._input_problem(text, words)
        if problem is not None:
            return [OutgoingMessage(problem)]
        try:
            return await self.rasa.send(participant.conversation_id, text.strip())
        except RasaUnavailable as exc:
            logger.error(
                "Rasa unavailable (%s) for conversation %s", exc, participant.conversation_id
            )
            return [OutgoingMessage(words.gettext(ENGINE_DOWN_MESSAGE))]

    def _input_problem(self, text: str, words: Localizer) -> str | None:
        """A polite answer for input the NLU should not see: empty, too long, no words."""
        stripped = text.strip()
        if not stripped:
            return words.gettext(EMPTY_MESSAGE)
        if len(stripped) > self.settings.max_message_chars:
            return words.gettext(TOO_LONG_MESSAGE).format(limit=self.settings.max_message_chars)
        if not any(ch.isalnum() for ch in stripped) and not stripped.startswith("/"):
            return words.gettext(NO_WORDS_MESSAGE)
        return None

    async def participant(self, channel: str, sender: str) -> Participant:
        """Find or create the citizen, identity and conversation behind ``sender``."""
        for _attempt in range(3):
            async with self.sessions() as session:
                found = await self._find(session, channel, sender)
                if found is not None:
                    return found
                try:
                    return await self._create(session, channel, sender)
                except IntegrityError:
                    await session.rollback()  # another request created it concurrently
        raise RuntimeError("could not create the conversation")

    async def _find(self, session: AsyncSession, channel: str, sender: str) -> Participant | None:
        row = (
            await session.execute(
                select(ChannelIdentity, Conversation, Citizen)
                .join(Conversation, Conversation.identity_id == ChannelIdentity.id)
                .join(Citizen, Citizen.id == ChannelIdentity.citizen_id)
                .where(ChannelIdentity.channel == channel, ChannelIdentity.external_id == sender)
            )
        ).first()
        if row is None:
            return None
        identity, conversation, citizen = row
        return Participant(
            citizen.id,
            identity.id,
            conversation.id,
            citizen.language or self.settings.default_language,
        )

    async def _create(self, session: AsyncSession, channel: str, sender: str) -> Participant:
        citizen = Citizen(language=None)
        session.add(citizen)
        await session.flush()
        identity = ChannelIdentity(citizen_id=citizen.id, channel=channel, external_id=sender)
        session.add(identity)
        await session.flush()
        conversation = Conversation(identity_id=identity.id, citizen_id=citizen.id, channel=channel)
        session.add(conversation)
        await session.commit()
        logger.info("new conversation %s for %s on %s", conversation.id, mask(sender), channel)
        return Participant(citizen.id, identity.id, conversation.id, self.settings.default_language)

    async def _store_inbound(self, participant: Participant, incoming: IncomingMessage) -> bool:
        """Commit the message before processing; ``False`` if this provider id was seen."""
        async with self.sessions() as session:
            conversation = await session.get(Conversation, participant.conversation_id)
            if conversation is not None:
                conversation.last_activity_at = utcnow()
            session.add(
                Message(
                    conversation_id=participant.conversation_id,
                    direction=Direction.INBOUND,
                    channel=incoming.channel,
                    external_id=incoming.external_id,
                    text=incoming.text,
                )
            )
            try:
                await session.commit()
            except IntegrityError:
                return False
        return True

    async def _store_outbound(
        self, participant: Participant, channel: str, replies: list[OutgoingMessage]
    ) -> None:
        now: datetime = utcnow()
        async with self.sessions() as session:
            session.add_all(
                Message(
                    conversation_id=participant.conversation_id,
                    direction=Direction.OUTBOUND,
                    channel=channel,
                    text=reply.text,
                    buttons=[{"title": b.title, "payload": b.payload} for b in reply.buttons]
                    or None,
                    created_at=now,
                )
                for reply in replies
            )
            await session.commit()
