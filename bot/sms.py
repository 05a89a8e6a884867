"""One SMS turn: compliance keywords and fast paths first, then the dialogue engine, then
the composer (GSM-7, segment budget, paging) and the outbox.

Runs in the background (see :mod:`bot.inbound`), after Twilio has had its empty answer.
STOP / START / HELP / MORE, ``STATUS <reference>`` and flood control never reach Rasa.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.actions.menus import main_menu_buttons
from bot.actions.status import (
    application_by_reference,
    is_disclosable,
    reference_asked,
    status_text,
)
from bot.conversation import Accepted, ConversationService, Participant, load_sender
from bot.db.models import (
    ChannelIdentity,
    Conversation,
    Delivery,
    Direction,
    Message,
    utcnow,
)
from bot.delivering import first_page
from bot.i18n import N_, Localizer, localizer
from bot.inbound import Lease
from bot.outbox import Outbox, opt_in, opt_out, outbox_row
from bot.privacy import mask
from bot.settings import Settings
from channels.base import OutgoingMessage, numbered_menu
from channels.sms.keywords import Keyword, recognise, status_reference
from service_connectors.base import ServiceConnector
from service_connectors.catalogue import Catalogue

logger = logging.getLogger(__name__)

# Built once: every SMS runs it, and building it cost more than running it.
RECENT_INBOUND = select(func.count(Message.id)).where(
    Message.conversation_id == bindparam("conversation_id"),
    Message.direction == Direction.INBOUND,
    Message.created_at >= bindparam("since"),
)

OPTED_OUT = N_(
    "You are unsubscribed and will get no more messages from us. Reply START to subscribe again."
)
OPTED_IN = N_("You are subscribed again. Reply HELP for help.")
HELP_TEXT = N_(
    "{organisation} text service. To talk to a person, call {phone} ({hours})."
    " Reply STOP to stop messages."
)
NOTHING_MORE = N_("There is nothing more to show. Reply HELP for the menu.")
TOO_FAST = N_("You are sending messages too fast. Please wait a minute, then try again.")
MEDIA_ONLY = N_("I can only read text messages, not pictures or files. Please write what you need.")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One inbound SMS with who sent it, loaded once for the whole turn."""

    session: AsyncSession
    message: Message
    participant: Participant
    identity: ChannelIdentity
    conversation: Conversation
    words: Localizer


@dataclass
class Turn:
    """What one inbound SMS produces: replies for the transcript and how to send them."""

    replies: list[OutgoingMessage]
    ignore_opt_out: bool = False  # the STOP confirmation goes out after opting out
    continues_paging: bool = False  # MORE: keep the remaining pages


class SmsTurns:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        conversations: ConversationService,
        outbox: Outbox,
        catalogue: Catalogue,
        connectors: Mapping[str, ServiceConnector],
        channel: str = "sms",
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.conversations = conversations
        self.outbox = outbox
        self.catalogue = catalogue
        self.connectors = connectors
        self.channel = channel

    async def handle(self, message: Message, lease: Lease) -> None:
        async with self.sessions() as session:
            exchange = await self._exchange(session, message)
            turn = await self._turn(exchange)
            delivery = await self._finish(exchange, turn)
            await lease.settle(session)
            await session.commit()
        if delivery is not None:
            await self.outbox.send_claimed(delivery)

    async def _exchange(self, session: AsyncSession, message: Message) -> Exchange:
        participant, conversation, identity = await load_sender(
            session, message.conversation_id, self.settings.default_language
        )
        words = localizer(participant.language)
        return Exchange(session, message, participant, identity, conversation, words)

    async def _turn(self, exchange: Exchange) -> Turn:
        session, message, words = exchange.session, exchange.message, exchange.words
        identity, conversation = exchange.identity, exchange.conversation
        opted_out = identity.opted_out_at is not None
        keyword = recognise(message.text, opted_out=opted_out)
        if keyword is not None and keyword.keyword is Keyword.OPT_OUT:
            await opt_out(session, identity.id, self.channel, keyword.word)
            logger.info("%s opted out by SMS", mask(identity.external_id))
            confirmation = [] if opted_out else [OutgoingMessage(words.gettext(OPTED_OUT))]
            return Turn(confirmation, ignore_opt_out=True)
        if keyword is not None and keyword.keyword is Keyword.OPT_IN:
            await opt_in(session, identity.id, self.channel, keyword.word)
            return Turn([OutgoingMessage(words.gettext(OPTED_IN))])
        if opted_out:
            return Turn([])  # stored, never answered until START
        if await self._flooding(session, conversation):
            return await self._flood_notice(conversation, words)
        if message.media_count and not message.text.strip():
            return Turn([OutgoingMessage(words.gettext(MEDIA_ONLY))])
        if keyword is not None and keyword.keyword is Keyword.HELP:
            return Turn([self._help(words)])
        if keyword is not None and keyword.keyword is Keyword.MORE:
            return self._more(conversation, words)
        status = await self._status_fast_path(session, message.text, exchange.participant, words)
        if status is not None:
            return Turn([OutgoingMessage(status)])
        # respond() commits this session before it asks the engine
        return Turn(
            await self.conversations.respond(exchange.participant, message.text, None, session)
        )

    async def _finish(self, exchange: Exchange, turn: Turn) -> Delivery | None:
        """Transcript, the outbox row and "processed", in the caller's one transaction;
        the row to send, if the turn has a reply."""
        accepted = Accepted(exchange.participant, exchange.message.id)
        await self.conversations.record_replies(
            exchange.participant, self.channel, turn.replies, accepted, exchange.session
        )
        if not turn.replies:
            return None
        if turn.continues_paging:  # an already composed page (it ends with its own prompt)
            return await self._enqueue(exchange, turn.replies[0].text)
        words = exchange.words
        texts = [numbered_menu(reply, words) for reply in turn.replies]
        body = first_page(exchange.conversation, texts, self.settings.sms_segment_budget, words)
        return await self._enqueue(exchange, body, turn.ignore_opt_out)

    async def _enqueue(
        self, exchange: Exchange, body: str, ignore_opt_out: bool = False
    ) -> Delivery:
        delivery = outbox_row(
            exchange.conversation.id, exchange.identity, body, ignore_opt_out=ignore_opt_out
        )
        await Outbox.store_claimed(exchange.session, [delivery])  # to send once committed
        return delivery

    async def _flooding(self, session: AsyncSession, conversation: Conversation) -> bool:
        since = utcnow() - timedelta(seconds=self.settings.sms_rate_limit_window_seconds)
        recent = await session.scalar(
            RECENT_INBOUND, {"conversation_id": conversation.id, "since": since}
        )
        return int(recent or 0) > self.settings.sms_rate_limit_messages

    async def _flood_notice(self, conversation: Conversation, words: Localizer) -> Turn:
        window = timedelta(seconds=self.settings.sms_rate_limit_window_seconds)
        told = conversation.rate_notice_at
        if told is not None and told.replace(tzinfo=None) >= (utcnow() - window).replace(
            tzinfo=None
        ):
            return Turn([])
        conversation.rate_notice_at = utcnow()
        logger.warning("rate limit reached for conversation %s", conversation.id)
        return Turn([OutgoingMessage(words.gettext(TOO_FAST))])

    def _help(self, words: Localizer) -> OutgoingMessage:
        text = words.gettext(HELP_TEXT).format(
            organisation=words.gettext(self.settings.organisation_name),
            phone=self.settings.call_centre_phone,
            hours=words.gettext(self.settings.call_centre_hours),
        )
        return OutgoingMessage(text, tuple(main_menu_buttons(words)))

    def _more(self, conversation: Conversation, words: Localizer) -> Turn:
        pages = list(conversation.pending_pages or [])
        if not pages:
            return Turn([OutgoingMessage(words.gettext(NOTHING_MORE))])
        conversation.pending_pages = pages[1:] or None
        return Turn([OutgoingMessage(pages[0])], continues_paging=True)

    async def _status_fast_path(
        self, session: AsyncSession, text: str, participant: Participant, words: Localizer
    ) -> str | None:
        """``STATUS <reference>`` from the applicant: answered here. Anyone else goes
        through the dialogue, which asks the second factor."""
        reference = status_reference(text)
        if reference is None or await reference_asked(
            session, participant.conversation_id, self.settings.supported_languages
        ):
            return None  # the dialogue asked for it: its answer, so the question is closed
        application = await application_by_reference(session, reference)
        if application is None or not await is_disclosable(
            session,
            application,
            participant.citizen_id,
            participant.identity_id,
            self.settings.max_verification_attempts_per_application,
        ):
            return None
        await session.commit()  # only read so far: no transaction waits on the backend
        return await status_text(application, words, self.catalogue, self.connectors)
