"""Proactive messages about an application: one per stage change, to the applicant only.

The message goes to the identity the citizen applied from, or, when that channel cannot
push (web chat) or may not be used (opted out, unreachable), to another identity linked
to the same citizen (SMS, Telegram); failing that, to the web chat, where it waits until
the browser collects it. It is written in the application's language, stored
in the transcript and queued in the outbox — not sent at night: a delivery due in quiet
hours waits for the morning. Never to an opted-out number.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.actions.status import describe_stage
from bot.db.models import (
    Application,
    ChannelIdentity,
    Citizen,
    Conversation,
    Direction,
    Message,
    utcnow,
)
from bot.delivering import queue_text
from bot.i18n import N_, Localizer, localizer
from bot.outbox import Outbox
from bot.privacy import mask
from bot.quiet_hours import send_after
from bot.settings import Settings
from service_connectors.catalogue import Catalogue

logger = logging.getLogger(__name__)

STAGE_UPDATE = N_("Update: {status}")
FILED_LATER = N_(
    "Your application {provisional} is now with the office. Its reference is {reference}."
    " Reply STATUS {reference} to follow it."
)
NEEDS_ATTENTION_LATER = N_(
    "Your application {reference} could not be sent to the office automatically. A member"
    " of our staff will check it and write to you here when it is sent or if we need"
    " anything from you."
)
# The citizen keeps the reference they were given when they applied (issue 24).
FILED_LATER_SAME = N_(
    "Your application {reference} is now with the office. Reply STATUS {reference} to follow it."
)
REFUSED_LATER_ANY = N_(
    "The office could not accept your application {reference}. Reply HELP to talk to a person."
)
REFUSED_LATER = N_(
    "The office could not accept your application {reference}: the answer for {field}"
    " is not valid. Reply HELP to talk to a person."
)


class Notifier:
    def __init__(self, settings: Settings, catalogue: Catalogue, outbox: Outbox) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.outbox = outbox

    async def stage_changed(self, session: AsyncSession, application: Application) -> bool:
        words = await self._words(session, application)
        status = describe_stage(application, words, self.catalogue)
        return await self.tell(
            session, application, words.gettext(STAGE_UPDATE).format(status=status), words
        )

    async def filed_later(self, session: AsyncSession, application: Application) -> bool:
        words = await self._words(session, application)
        reference = application.reference or application.provisional_reference
        text = (
            words.gettext(FILED_LATER_SAME).format(reference=reference)
            if reference == application.provisional_reference
            else words.gettext(FILED_LATER).format(
                provisional=application.provisional_reference, reference=reference
            )
        )
        return await self.tell(session, application, text, words)

    async def needs_attention(self, session: AsyncSession, application: Application) -> bool:
        """Retries stopped (a refusal, or the caps): a person will check it, and writes."""
        words = await self._words(session, application)
        text = words.gettext(NEEDS_ATTENTION_LATER).format(
            reference=application.provisional_reference
        )
        return await self.tell(session, application, text, words)

    async def refused_later(
        self, session: AsyncSession, application: Application, field_label: str | None
    ) -> bool:
        """The backend refused it after the citizen left: which answer, if it said."""
        words = await self._words(session, application)
        reference = application.provisional_reference
        text = (
            words.gettext(REFUSED_LATER).format(
                reference=reference, field=words.gettext(field_label)
            )
            if field_label
            else words.gettext(REFUSED_LATER_ANY).format(reference=reference)
        )
        return await self.tell(session, application, text, words)

    async def _words(self, session: AsyncSession, application: Application) -> Localizer:
        """The citizen's language now (they may have switched since applying)."""
        citizen = await session.get(Citizen, application.citizen_id)
        return localizer((citizen.language if citizen else None) or application.language)

    async def tell(
        self, session: AsyncSession, application: Application, text: str, words: Localizer
    ) -> bool:
        """Queue ``text`` for the applicant (in the caller's transaction); False if no
        channel of theirs may carry it (then it is only in the transcript)."""
        identity = await self._recipient(session, application)
        if identity is None:
            logger.info("application %s: no channel to notify on", application.id)
            session.add(
                Message(
                    conversation_id=application.conversation_id,
                    direction=Direction.OUTBOUND,
                    channel="notification",
                    text=text,
                )
            )
            return False
        conversation = await self._conversation(session, identity)
        due = send_after(
            utcnow(),
            self.settings.quiet_hours_start,
            self.settings.quiet_hours_end,
            self.settings.timezone,
        )
        budget = self.settings.sms_segment_budget
        await queue_text(session, conversation, identity, text, words, budget, due=due)
        logger.info(
            "application %s: notification queued for %s on %s",
            application.id,
            mask(identity.external_id),
            identity.channel,
        )
        return True

    async def _recipient(
        self, session: AsyncSession, application: Application
    ) -> ChannelIdentity | None:
        identities = list(
            await session.scalars(
                select(ChannelIdentity)
                .where(ChannelIdentity.citizen_id == application.citizen_id)
                .order_by(ChannelIdentity.last_seen_at.desc())
            )
        )
        usable = [
            i
            for i in identities
            if i.channel in self.outbox.senders
            and i.opted_out_at is None
            and i.unreachable_at is None
        ]
        origin = next((i for i in usable if i.id == application.identity_id), None)
        if origin is not None or usable:
            return origin or usable[0]
        # Only a web chat: the message waits for the browser to come back and collect it.
        return next((i for i in identities if i.channel == "webchat"), None)

    async def _conversation(self, session: AsyncSession, identity: ChannelIdentity) -> Conversation:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.identity_id == identity.id)
        )
        if conversation is None:  # a number linked from Telegram that never texted us
            conversation = Conversation(
                identity_id=identity.id, citizen_id=identity.citizen_id, channel=identity.channel
            )
            session.add(conversation)
            await session.flush()
        return conversation
