"""Queue a text for a citizen on one of their identities: the transcript row and the
outbox row in the caller's transaction.

Used for everything the bot says outside a reply turn (stage notifications, queue
updates, agents' replies). SMS bodies go through the composer (GSM-7, paged with MORE
like any reply); web chat has no provider, so its rows wait in the outbox until the
citizen's browser collects them (:meth:`bot.delivering.collect_webchat`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    ChannelIdentity,
    Conversation,
    Delivery,
    DeliveryStatus,
    Direction,
    Message,
    utcnow,
)
from bot.i18n import N_, Localizer
from bot.outbox import outbox_row
from channels.base import Button, OutgoingMessage, inline_keyboard, numbered_menu
from channels.sms.composer import compose

MORE_PROMPT = N_("Reply MORE for the rest.")


def first_page(conversation: Conversation, texts: list[str], budget: int, words: Localizer) -> str:
    """The first SMS of ``texts`` within the segment budget; the other pages wait on the
    conversation for MORE."""
    pages = compose(texts, budget, words.gettext(MORE_PROMPT))
    conversation.pending_pages = pages[1:] or None
    return pages[0]


async def queue_text(
    session: AsyncSession,
    conversation: Conversation,
    identity: ChannelIdentity,
    text: str,
    words: Localizer,
    segment_budget: int,
    *,
    buttons: Sequence[Button] = (),
    staff_id: str | None = None,
    due: datetime | None = None,
) -> Message:
    """Add ``text`` to the transcript and the outbox for ``identity`` (caller commits)."""
    body = text
    keyboard = None
    if identity.channel == "sms":
        composed = numbered_menu(OutgoingMessage(text, tuple(buttons)), words)
        body = first_page(conversation, [composed], segment_budget, words)
    elif buttons:
        keyboard = inline_keyboard(OutgoingMessage(text, tuple(buttons)))
    message = Message(
        conversation_id=conversation.id,
        direction=Direction.OUTBOUND,
        channel=identity.channel,
        text=text,
        buttons=[{"title": b.title, "payload": b.payload} for b in buttons] or None,
        staff_id=staff_id,
    )
    session.add(message)
    session.add(
        outbox_row(
            conversation.id, identity, body, keyboard=keyboard, next_attempt_at=due or utcnow()
        )
    )
    await session.flush()
    return message


async def collect_webchat(session: AsyncSession, identity_id: str) -> list[Delivery]:
    """Queued web chat rows for one browser, marked delivered: each is shown once, by
    whichever replica holds the browser's websocket (an UPDATE that only one wins)."""
    waiting = list(
        await session.scalars(
            select(Delivery)
            .where(
                Delivery.identity_id == identity_id,
                Delivery.channel == "webchat",
                Delivery.status == DeliveryStatus.QUEUED,
                Delivery.next_attempt_at <= utcnow(),
            )
            .order_by(Delivery.id)
        )
    )
    collected = []
    for delivery in waiting:
        result = await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, Delivery.status == DeliveryStatus.QUEUED)
            .values(status=DeliveryStatus.DELIVERED, attempts=Delivery.attempts + 1)
        )
        if getattr(result, "rowcount", 0):
            collected.append(delivery)
    return collected
