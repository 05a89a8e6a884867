"""Conversation orchestration: who is writing, store the message, ask Rasa, store replies.

Stateless by design: everything about a conversation is in the database or in Rasa's
tracker store, so any replica can take the next message. The inbound message is
committed before it is processed, and a provider message id seen before is answered once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.commands import command_payload
from bot.db.models import (
    LATEST_FIRST,
    ApplicationDraft,
    ChannelIdentity,
    Citizen,
    Conversation,
    Direction,
    Message,
    as_utc,
    table_of,
    utcnow,
)
from bot.db.retry import retrying
from bot.handoff import CHOICE_BOT, Handoffs
from bot.i18n import N_, Localizer, language_name, localizer
from bot.inbound import Lease
from bot.languages import detect, language_keyword, sample
from bot.linking import (
    CODE_VALID_FOR,
    Command,
    DeviceCommand,
    Redeemed,
    device_command,
    issue_code,
    last_question,
    redeem_code,
    unlink,
)
from bot.metrics import DETACHED, GatewayMetrics
from bot.privacy import mask
from bot.rasa_client import RasaClient, RasaUnavailable
from bot.settings import Settings
from channels.base import Button, IncomingMessage, OutgoingMessage
from service_connectors.answers import parse_date
from service_connectors.catalogue import find_reference

logger = logging.getLogger(__name__)

EMPTY_MESSAGE = N_("I received an empty message. How can I help? Reply HELP to see what I can do.")
TOO_LONG_MESSAGE = N_(
    "Your message is too long for me. Please send a shorter one (up to {limit} characters)."
)
NO_WORDS_MESSAGE = N_("I can only read words. Please write what you need, or reply HELP.")
CODE_ISSUED = N_(
    "To continue on another phone or app, send LINK {code} to us from there within"
    " {minutes} minutes. Do not give this code to anyone."
)
DEVICE_LINKED = N_("Done: this device is linked. Let us continue where you stopped.")
ALREADY_LINKED = N_("This device is already linked.")
CODE_INVALID = N_(
    "That code is wrong or has expired. Send LINK on your other device to get a new one."
)
CODE_LOCKED = N_("Too many wrong codes. Please try again in an hour.")
UNLINKED = N_("This device is no longer linked to your other devices.")
LANGUAGE_SET = N_("OK, I will write in {language}.")
NOT_LINKED = N_("This device is not linked to any other device.")
ENGINE_DOWN_MESSAGE = N_(
    "Sorry, I cannot answer right now. Your message is saved. Please try again in a few minutes."
)

MAX_DATE_CHARS = 40  # longer text is no date: never parsed as one
# How long a draft means a form waits for its answer: Rasa's session (bot/domain.yml,
# session_expiration_time) ends an untouched form after this.
FORM_WAITS = timedelta(minutes=120)

# Built once: every message runs them, and building a statement costs more than running it.
_identities, _conversations = table_of(ChannelIdentity).c, table_of(Conversation).c
_citizens = table_of(Citizen).c
FIND_SENDER = (
    select(
        _citizens.id,
        _identities.id,
        _conversations.id,
        _citizens.language,
        _conversations.dialogue_id,
    )
    .join_from(table_of(ChannelIdentity), table_of(Conversation))
    .join(table_of(Citizen), _citizens.id == _identities.citizen_id)
    .where(
        _identities.channel == bindparam("channel"), _identities.external_id == bindparam("sender")
    )
)
TOUCH = (
    update(table_of(Conversation))
    .where(_conversations.id == bindparam("conversation_id"))
    .values(last_activity_at=bindparam("now"))
)
STORE = insert(table_of(Message))
_messages = table_of(Message).c
# The inbound message first, before any other row is locked: a provider's retry of a
# message being processed then waits on that message alone and finds it stored, instead
# of holding the conversation row the handler needs (a deadlock on PostgreSQL).
STORE_NEW = {
    name: insert_of(table_of(Message))
    .on_conflict_do_nothing(index_elements=[_messages.channel, _messages.external_id])
    .returning(_messages.id)
    for name, insert_of in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
LAST_MENU = (
    select(Message.buttons)
    .where(
        Message.conversation_id == bindparam("conversation_id"),
        Message.direction == Direction.OUTBOUND,
    )
    .order_by(*LATEST_FIRST)
    .limit(1)
)
ANSWERED = (
    update(table_of(Message))
    .where(table_of(Message).c.id == bindparam("message_id"))
    .values(processed_at=bindparam("now"))
)

SENDER_OF = (
    select(Conversation, ChannelIdentity, Citizen)
    .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
    .join(Citizen, Citizen.id == Conversation.citizen_id)
    .where(Conversation.id == bindparam("conversation_id"))
)

# Takes the background lease in the transaction that stores the message (bot.inbound).
Claim = Callable[[AsyncSession, str], Awaitable[Lease | None]]


@dataclass(frozen=True, slots=True)
class Accepted:
    participant: Participant
    message_id: int
    lease: Lease | None = None  # what ``claim`` took, if asked


@dataclass(frozen=True, slots=True)
class Participant:
    citizen_id: str
    identity_id: str
    conversation_id: str
    language: str
    dialogue_id: str = ""  # the Rasa sender id (another device's after linking)
    language_chosen: bool = True  # False while the citizen's language is only the default

    @property
    def rasa_sender(self) -> str:
        return self.dialogue_id or self.conversation_id


async def load_sender(
    session: AsyncSession, conversation_id: str, default_language: str
) -> tuple[Participant, Conversation, ChannelIdentity]:
    """Who wrote a stored message, loaded once for a background turn (SMS, Telegram)."""
    row = (await session.execute(SENDER_OF, {"conversation_id": conversation_id})).one()
    conversation, identity, citizen = row
    participant = Participant(
        citizen.id,
        identity.id,
        conversation.id,
        citizen.language or default_language,
        conversation.rasa_sender,
        citizen.language is not None,
    )
    return participant, conversation, identity


class ConversationService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        rasa: RasaClient,
        handoffs: Handoffs | None = None,
        metrics: GatewayMetrics = DETACHED,  # the app's counts inbound messages stored
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.rasa = rasa
        self.handoffs = handoffs or Handoffs(settings, sessions)
        self.metrics = metrics

    async def handle(self, incoming: IncomingMessage) -> list[OutgoingMessage]:
        """Process one inbound message now; the replies, or none for a duplicate."""
        accepted = await self.accept(incoming)
        if accepted is None:
            return []
        hint = incoming.metadata.get("language")
        replies = await self.respond(accepted.participant, incoming.text, hint)
        await self.record_replies(accepted.participant, incoming.channel, replies, accepted)
        return replies

    async def accept(
        self, incoming: IncomingMessage, claim: Claim | None = None
    ) -> Accepted | None:
        """Find the sender and commit the message (and what ``claim`` takes, in the same
        transaction); ``None`` if this provider id was seen. A known sender costs one
        transaction (the common case on a webhook's hot path)."""

        async def store() -> tuple[Participant, tuple[int, Lease | None] | None]:
            async with self.sessions() as session:
                found = await self._find(session, incoming.channel, incoming.sender)
                if found is not None:
                    return found, await self._store_inbound(session, found, incoming, claim)
            # first contact: create, then store (never two sessions held)
            created = await self.participant(incoming.channel, incoming.sender)
            async with self.sessions() as session:
                return created, await self._store_inbound(session, created, incoming, claim)

        participant, stored = await retrying(store, "storing an inbound message")
        if stored is None:
            logger.info("duplicate message %s ignored", incoming.external_id)
            return None
        message_id, lease = stored
        self.metrics.messages_received.labels(incoming.channel).inc()
        return Accepted(participant, message_id, lease)

    async def respond(
        self,
        participant: Participant,
        text: str,
        language_hint: str | None = None,
        session: AsyncSession | None = None,
    ) -> list[OutgoingMessage]:
        """The bot's replies to ``text``: a polite answer to odd input, a language
        switch, a device command, else Rasa's. ``language_hint`` (the browser's or the
        messenger app's language) is used until the citizen's language is known. A
        caller's ``session`` serves the checks before Rasa and is committed before the
        engine is asked (no transaction stays open while it thinks)."""
        if session is None:
            async with self.sessions() as own:
                return await self.respond(participant, text, language_hint, own)
        supported = self.settings.supported_languages
        wanted = language_keyword(text, supported)
        if wanted is not None:  # "FR", "русский": at any time, even mid-form
            await self._set_language(participant.citizen_id, wanted)
            words = localizer(wanted)
            return [
                OutgoingMessage(words.gettext(LANGUAGE_SET).format(language=language_name(wanted)))
            ]
        resolved = await self._resolve_menu_choice(session, participant, text.strip())
        if not participant.language_chosen:
            found = await self._detect(session, participant, text, resolved) or (
                language_hint if language_hint in supported else None
            )
            if found is not None:
                await self._set_language(participant.citizen_id, found)
                participant = replace(participant, language=found, language_chosen=True)
        words = localizer(participant.language)
        with_person = await self.handoffs.intercept(
            participant.citizen_id, text, resolved, words, session
        )
        if with_person is not None:  # a person is involved: the bot stays out of it
            if resolved == CHOICE_BOT:  # back to the bot: its open question was asked again
                await self._resume_form(participant)
            return with_person
        problem = self._input_problem(text, words)
        if problem is not None:
            return [OutgoingMessage(problem)]
        command = device_command(text)
        if command is not None:
            return await self._device_command(participant, command, words)
        text = command_payload(resolved, supported) or resolved  # EXIT, HELP, PERSON
        await session.commit()  # (intercept committed already: no trip to the database)
        try:
            return await self.rasa.send(participant.rasa_sender, text)
        except RasaUnavailable as exc:
            logger.error(
                "Rasa unavailable (%s) for conversation %s", exc, participant.conversation_id
            )
            return [OutgoingMessage(words.gettext(ENGINE_DOWN_MESSAGE))]

    async def _detect(
        self, session: AsyncSession, participant: Participant, text: str, resolved: str
    ) -> str | None:
        """The language of a message that says something, not of an answer: never of a
        menu choice, a payload, a command word, a reference, a date, or of anything typed
        while an application is being filled in ("Maria Fournier" is no French). Whether
        one is comes from the gateway's own draft (touched within Rasa's session), read
        only when the text would set a language (rare: only while the citizen's language
        is unknown), never from Rasa's tracker."""
        stripped = text.strip()
        supported = self.settings.supported_languages
        if resolved != stripped or stripped.startswith("/") or command_payload(stripped, supported):
            return None
        if len(stripped) <= MAX_DATE_CHARS and parse_date(stripped, date.today()) is not None:
            return None
        words = " ".join(w for w in sample(stripped).split() if find_reference(w) is None)
        found = detect(words, supported)  # "где моя заявка BC-7K3Q9P": the words around it
        if found is None:
            return None
        draft = await session.get(ApplicationDraft, participant.rasa_sender)
        waiting = draft is not None and as_utc(draft.updated_at) > utcnow() - FORM_WAITS
        return None if waiting else found

    async def _resume_form(self, participant: Participant) -> None:
        """The form the request for a person interrupted takes the next message as its
        answer (else Rasa would only ask its question again)."""
        try:
            await self.rasa.resume_loop(participant.rasa_sender)
        except RasaUnavailable as exc:
            logger.warning("could not resume the form of %s: %s", participant.conversation_id, exc)

    async def _set_language(self, citizen_id: str, language: str) -> None:
        async with self.sessions() as session:
            await session.execute(
                update(Citizen).where(Citizen.id == citizen_id).values(language=language)
            )
            await session.commit()

    async def _device_command(
        self, participant: Participant, command: DeviceCommand, words: Localizer
    ) -> list[OutgoingMessage]:
        """LINK / LINK <code> / UNLINK: handled here, whatever the dialogue is doing."""
        async with self.sessions() as session:
            conversation = await session.get(Conversation, participant.conversation_id)
            assert conversation is not None
            replies: list[OutgoingMessage]
            if command.command is Command.ISSUE:
                code = await issue_code(session, conversation)
                minutes = int(CODE_VALID_FOR.total_seconds() // 60)
                replies = [
                    OutgoingMessage(words.gettext(CODE_ISSUED).format(code=code, minutes=minutes))
                ]
            elif command.command is Command.UNLINK:
                done = await unlink(session, conversation)
                replies = [OutgoingMessage(words.gettext(UNLINKED if done else NOT_LINKED))]
            else:
                replies = await self._redeem(session, conversation, command.code, words)
            await session.commit()
        return replies

    async def _redeem(
        self, session: AsyncSession, conversation: Conversation, code: str, words: Localizer
    ) -> list[OutgoingMessage]:
        outcome, link = await redeem_code(session, conversation, code)
        if outcome is Redeemed.LOCKED:
            return [OutgoingMessage(words.gettext(CODE_LOCKED))]
        if outcome is Redeemed.INVALID or link is None:
            return [OutgoingMessage(words.gettext(CODE_INVALID))]
        if outcome is Redeemed.SAME_CITIZEN:
            return [OutgoingMessage(words.gettext(ALREADY_LINKED))]
        replies = [OutgoingMessage(words.gettext(DEVICE_LINKED))]
        question = await last_question(session, link)
        if question is not None:  # the open question, with its options, on this device
            buttons = tuple(Button(b["title"], b["payload"]) for b in question.buttons or [])
            replies.append(OutgoingMessage(question.text, buttons))
        return replies

    async def _resolve_menu_choice(
        self, session: AsyncSession, participant: Participant, text: str
    ) -> str:
        """A digit or an option's exact title answering the last menu → that option's
        payload, which Rasa takes as the intent without running the NLU."""
        buttons = await session.scalar(LAST_MENU, {"conversation_id": participant.conversation_id})
        payload = choose_option(text, buttons or [])
        return payload if payload is not None else text

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
        row = (await session.execute(FIND_SENDER, {"channel": channel, "sender": sender})).first()
        if row is None:
            return None
        citizen_id, identity_id, conversation_id, language, dialogue_id = row
        return Participant(
            citizen_id,
            identity_id,
            conversation_id,
            language or self.settings.default_language,
            dialogue_id or conversation_id,
            language is not None,
        )

    async def _create(self, session: AsyncSession, channel: str, sender: str) -> Participant:
        """A conversation for ``sender``: for its identity if one exists (a phone number a
        Telegram user shared before texting), else for a new citizen."""
        identity = await session.scalar(
            select(ChannelIdentity).where(
                ChannelIdentity.channel == channel, ChannelIdentity.external_id == sender
            )
        )
        if identity is None:
            citizen = Citizen(language=None)
            session.add(citizen)
            await session.flush()
            identity = ChannelIdentity(citizen_id=citizen.id, channel=channel, external_id=sender)
            session.add(identity)
            await session.flush()
        citizen_id = identity.citizen_id
        conversation = Conversation(identity_id=identity.id, citizen_id=citizen_id, channel=channel)
        session.add(conversation)
        language = await session.scalar(select(Citizen.language).where(Citizen.id == citizen_id))
        await session.commit()
        logger.info("new conversation %s for %s on %s", conversation.id, mask(sender), channel)
        return Participant(
            citizen_id,
            identity.id,
            conversation.id,
            language or self.settings.default_language,
            conversation.id,
            language is not None,
        )

    async def _store_inbound(
        self,
        session: AsyncSession,
        participant: Participant,
        incoming: IncomingMessage,
        claim: Claim | None = None,
    ) -> tuple[int, Lease | None] | None:
        """Commit the message before processing; ``None`` if this provider id was seen."""
        now = utcnow()
        message = {
            "conversation_id": participant.conversation_id,
            "direction": Direction.INBOUND,
            "channel": incoming.channel,
            "external_id": incoming.external_id,
            "text": incoming.text,
            "created_at": now,
            "media_count": int(incoming.metadata.get("media_count", 0)),
            "provider_data": incoming.metadata.get("provider_data"),
        }
        store = STORE_NEW[session.get_bind().dialect.name]
        message_id = (await session.execute(store, message)).scalar()
        if message_id is None:  # this provider id was stored before
            await session.rollback()
            return None
        # Written after the message and before any claim: a drain settling meanwhile
        # waits for this commit, then finds the message (bot.inbound).
        await session.execute(TOUCH, {"conversation_id": participant.conversation_id, "now": now})
        lease = await claim(session, participant.conversation_id) if claim else None
        await session.commit()
        return message_id, lease

    async def record_replies(
        self,
        participant: Participant,
        channel: str,
        replies: list[OutgoingMessage],
        accepted: Accepted | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        """Add the replies to the transcript and mark the inbound message answered; in
        ``session`` when given (the caller commits), else in a transaction of its own."""
        if session is None:
            async with self.sessions() as own:
                await self.record_replies(participant, channel, replies, accepted, own)
                await own.commit()
            return
        now: datetime = utcnow()
        if replies:
            transcript = [
                {
                    "conversation_id": participant.conversation_id,
                    "direction": Direction.OUTBOUND,
                    "channel": channel,
                    "text": reply.text,
                    "buttons": [{"title": b.title, "payload": b.payload} for b in reply.buttons]
                    or None,
                    "created_at": now,
                }
                for reply in replies
            ]
            await session.execute(STORE, transcript)
        if accepted is not None:
            await session.execute(ANSWERED, {"message_id": accepted.message_id, "now": now})


def choose_option(text: str, buttons: list[dict[str, str]]) -> str | None:
    """The payload of the option ``text`` picks by number or by its exact title."""
    if not buttons:
        return None
    answer = text.strip().rstrip(".")
    if answer.isdigit() and 1 <= int(answer) <= len(buttons):
        return buttons[int(answer) - 1]["payload"]
    folded = answer.casefold()
    return next((b["payload"] for b in buttons if b["title"].casefold() == folded), None)
