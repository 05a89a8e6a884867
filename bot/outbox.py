"""The outbox of provider messages (SMS pages): send, retry with backoff, track delivery.

Every outbound provider message is a :class:`~bot.db.models.Delivery` row committed
before it is sent. A sender claims a row with a short lease (an atomic UPDATE), so two
replicas never send the same row; a crash mid-send lets the lease expire and the row be
retried. Opted-out recipients are never sent to (except the STOP confirmation itself).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.sql.schema import ColumnDefault

from bot.db.leases import claim, lease_free
from bot.db.models import (
    ChannelIdentity,
    ConsentChange,
    Delivery,
    DeliveryStatus,
    inserted_id,
    table_of,
    utcnow,
)
from bot.metrics import DETACHED, GatewayMetrics
from bot.privacy import mask
from channels.base import DeliveryError, OutputChannel
from channels.sms.composer import count_segments

logger = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(seconds=30)
# Later statuses never go back to earlier ones (provider callbacks arrive out of order).
STATUS_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.ACCEPTED: 1,
    DeliveryStatus.SENT: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.UNDELIVERED: 3,
    DeliveryStatus.FAILED: 3,
    DeliveryStatus.SUPPRESSED: 3,
}


FAILED_FOR_GOOD = (DeliveryStatus.UNDELIVERED, DeliveryStatus.FAILED)


# Built once: every reply runs them, and building a statement costs more than running it.
_deliveries = table_of(Delivery)
STORE = insert(_deliveries)
REACHABLE = select(
    table_of(ChannelIdentity).c.opted_out_at, table_of(ChannelIdentity).c.unreachable_at
).where(table_of(ChannelIdentity).c.id == bindparam("identity_id"))
SETTLED = (
    update(_deliveries)
    .where(_deliveries.c.id == bindparam("delivery_id"))
    .values(
        status=bindparam("new_status"),
        provider_id=bindparam("new_provider_id"),
        attempts=bindparam("new_attempts"),
        lease_until=None,
        updated_at=bindparam("now"),
    )
)


def backoff(attempt: int, first: float = 5.0) -> timedelta:
    """5 s, 10 s, 20 s … capped at 10 minutes, with jitter so retries do not stampede."""
    base = min(first * 2 ** max(attempt - 1, 0), 600)
    return timedelta(seconds=base * random.uniform(0.8, 1.2))  # noqa: S311 (not crypto)


async def opt_out(session: AsyncSession, identity_id: str, channel: str, trigger: str) -> None:
    """Record an opt-out (idempotent on the identity, always recorded in the log)."""
    await session.execute(
        update(ChannelIdentity)
        .where(ChannelIdentity.id == identity_id, ChannelIdentity.opted_out_at.is_(None))
        .values(opted_out_at=utcnow())
    )
    session.add(
        ConsentChange(identity_id=identity_id, channel=channel, opted_in=False, trigger=trigger)
    )


async def opt_in(session: AsyncSession, identity_id: str, channel: str, trigger: str) -> None:
    await session.execute(
        update(ChannelIdentity).where(ChannelIdentity.id == identity_id).values(opted_out_at=None)
    )
    session.add(
        ConsentChange(identity_id=identity_id, channel=channel, opted_in=True, trigger=trigger)
    )


def outbox_row(
    conversation_id: str, identity: ChannelIdentity, body: str, **extra: Any
) -> Delivery:
    """A provider message to ``identity`` (its channel and address), SMS segments counted."""
    segments = count_segments(body).segments if identity.channel == "sms" else 1
    return Delivery(
        conversation_id=conversation_id,
        identity_id=identity.id,
        channel=identity.channel,
        recipient=identity.external_id,
        body=body,
        segments=segments,
        **extra,
    )


class Outbox:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        max_attempts: int,
        retry_base_seconds: float = 5.0,
        metrics: GatewayMetrics = DETACHED,
    ) -> None:
        self.sessions = sessions
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.metrics = metrics
        self.senders: dict[str, OutputChannel] = {}

    def register(self, channel: str, sender: OutputChannel) -> None:
        self.senders[channel] = sender

    @staticmethod
    async def store_claimed(session: AsyncSession, deliveries: Sequence[Delivery]) -> None:
        """Insert new rows claimed by their creator, which sends them right after its
        commit (:meth:`send_claimed`); if that replica dies, the lease expires and the sweep
        sends them. Written as plain INSERTs (the unit of work cost more than the rest of
        a reply); the objects get their ids and defaults and stay out of the session."""
        now = utcnow()
        for delivery in deliveries:
            delivery.lease_until = now + CLAIM_LEASE
            row = _with_defaults(delivery)
            delivery.id = inserted_id(await session.execute(STORE, row))
            make_transient_to_detached(delivery)

    async def send_claimed(self, delivery: Delivery) -> int:
        """Send a row this replica stored claimed (as committed; not read again); 1 if the
        provider took it."""
        async with self.sessions() as session:
            return await self._deliver(session, delivery)

    async def send_due(self, limit: int = 50) -> int:
        """Claim and send due rows, oldest first; how many were sent."""
        now = utcnow()
        async with self.sessions() as session:
            query = select(Delivery.id).where(
                Delivery.status == DeliveryStatus.QUEUED,
                Delivery.next_attempt_at <= now,
                Delivery.channel.in_(self.senders),
                lease_free(Delivery, now),
            )
            due = list(await session.scalars(query.order_by(Delivery.id).limit(limit)))
        sent = 0
        for delivery_id in due:
            if await self._claim(delivery_id):
                sent += await self._send(delivery_id)
        return sent

    async def _claim(self, delivery_id: int) -> bool:
        queued = Delivery.status == DeliveryStatus.QUEUED
        return await claim(self.sessions, Delivery, delivery_id, CLAIM_LEASE, queued)

    async def _send(self, delivery_id: int) -> int:
        async with self.sessions() as session:
            delivery = await session.get(Delivery, delivery_id)
            if delivery is None:
                return 0
            session.expunge(delivery)  # as a stored claimed row: written by statements
            return await self._deliver(session, delivery)

    async def _deliver(self, session: AsyncSession, delivery: Delivery) -> int:
        """Hand ``delivery`` (claimed, outside any session) to its provider unless the
        recipient opted out (read now) or is unreachable; commits ``session``."""
        reachable = (
            await session.execute(REACHABLE, {"identity_id": delivery.identity_id})
        ).first()
        if (
            reachable is None
            or reachable.unreachable_at is not None
            or (reachable.opted_out_at is not None and not delivery.ignore_opt_out)
        ):
            await self._settled(session, delivery, DeliveryStatus.SUPPRESSED)
            self._count(delivery.channel, "suppressed")
            return 0
        await session.commit()  # only read: no transaction waits on the provider
        delivery.attempts += 1
        try:
            provider_id = await self.senders[delivery.channel].deliver(
                delivery.recipient, delivery.body, delivery.keyboard
            )
        except DeliveryError as error:
            await self._failed(session, await session.merge(delivery), error)
            await session.commit()
            return 0
        delivery.provider_id = provider_id
        await self._settled(session, delivery, DeliveryStatus.ACCEPTED)
        self._count(delivery.channel, "sent")
        self.metrics.messages_sent.labels(delivery.channel).inc()
        return 1

    def _count(self, channel: str, outcome: str) -> None:
        self.metrics.deliveries.labels(channel, outcome).inc()

    async def _settled(
        self, session: AsyncSession, delivery: Delivery, status: DeliveryStatus
    ) -> None:
        delivery.status, delivery.lease_until, delivery.updated_at = status, None, utcnow()
        await session.execute(
            SETTLED,
            {"delivery_id": delivery.id, "new_status": status, "now": delivery.updated_at,
             "new_provider_id": delivery.provider_id, "new_attempts": delivery.attempts},
        )  # fmt: skip
        await session.commit()

    async def _failed(
        self, session: AsyncSession, delivery: Delivery, error: DeliveryError
    ) -> None:
        delivery.error_code = error.code
        delivery.lease_until = None
        if error.opted_out:
            delivery.status = DeliveryStatus.FAILED
            await opt_out(session, delivery.identity_id, delivery.channel, f"error {error.code}")
            logger.info("recipient %s unsubscribed at the provider", mask(delivery.recipient))
        elif error.unreachable:
            delivery.status = DeliveryStatus.FAILED
            await session.execute(
                update(ChannelIdentity)
                .where(ChannelIdentity.id == delivery.identity_id)
                .values(unreachable_at=utcnow())
            )
            logger.info("recipient %s unreachable, not retried", mask(delivery.recipient))
        elif error.retriable and delivery.attempts < self.max_attempts:
            delivery.status = DeliveryStatus.QUEUED
            delay = backoff(delivery.attempts, self.retry_base_seconds)
            if error.retry_after is not None:  # the provider said when: not sooner
                delay = max(delay, timedelta(seconds=error.retry_after))
            delivery.next_attempt_at = utcnow() + delay
            logger.warning("delivery %s failed (%s), will retry", delivery.id, error)
        else:
            delivery.status = DeliveryStatus.FAILED
            logger.error("delivery %s failed for good (%s)", delivery.id, error)
        retried = delivery.status == DeliveryStatus.QUEUED
        self._count(delivery.channel, "retried" if retried else "failed")

    async def record_status(
        self, channel: str, provider_id: str, status: DeliveryStatus, error: DeliveryError | None
    ) -> bool:
        """A provider's delivery report; ``False`` if we do not know the message."""
        async with self.sessions() as session:
            delivery = await session.scalar(  # locked: reports race on several replicas
                select(Delivery)
                .where(Delivery.channel == channel, Delivery.provider_id == provider_id)
                .with_for_update()
            )
            if delivery is None:
                return False
            if error is not None and status in (
                DeliveryStatus.UNDELIVERED,
                DeliveryStatus.FAILED,
            ):
                if error.opted_out or (error.retriable and delivery.attempts < self.max_attempts):
                    await self._failed(session, delivery, error)
                    if delivery.status == DeliveryStatus.QUEUED:
                        delivery.provider_id = None  # a new send gets a new id
                    await session.commit()
                    return True
                delivery.error_code = error.code
            if STATUS_RANK[status] >= STATUS_RANK[DeliveryStatus(delivery.status)]:
                if status != delivery.status and status in FAILED_FOR_GOOD:
                    self._count(channel, "failed")  # reported after the provider took it
                delivery.status = status
            await session.commit()
            return True


def _with_defaults(delivery: Delivery) -> dict[str, Any]:
    """The new row's values: what was set on ``delivery``, and the columns' defaults (or
    NULL) for the rest, which are set on it too (what a flush would have done)."""
    row: dict[str, Any] = {}
    for column in _deliveries.columns:
        if column.primary_key:
            continue
        if column.key not in delivery.__dict__:
            default = column.default
            value = None  # what the INSERT writes, so no attribute is left to load later
            if isinstance(default, ColumnDefault):
                value = default.arg(None) if default.is_callable else default.arg
            setattr(delivery, column.key, value)
        row[column.key] = getattr(delivery, column.key)
    return row
