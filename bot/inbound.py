"""Background processing of inbound messages: in order per conversation, on any replica.

Webhook channels (SMS, Telegram) store a message, answer the provider at once and process
it here. A short lease on the conversation row makes one drain at a time process its
unprocessed messages, oldest first. The webhook takes the lease in the transaction that
stores the message (:meth:`InboundWorker.claim`); a webhook that finds it taken leaves its
message to the holder. The handler gives the lease back in its own last transaction
(:meth:`Lease.settle`), unless another message waits, which it then keeps the lease for.
Both sides write the conversation row before they look, so a message is never left
between a release and a failed claim. A periodic sweep picks up what a crashed replica
left behind once its lease has expired.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.leases import take_lease
from bot.db.models import WAITING_TERMS, Conversation, Message, table_of, utcnow
from bot.db.retry import ATTEMPTS, is_transient, retrying

logger = logging.getLogger(__name__)

# Built once: each message runs them, and building a statement costs more than running it.
_conversations = table_of(Conversation).c
RELEASE = (
    update(table_of(Conversation))
    .where(
        _conversations.id == bindparam("conversation_id"),
        _conversations.lease_owner == bindparam("token"),
    )
    .values(lease_owner=None, lease_until=None)
)
OLDEST_WAITING = (
    select(Message)
    .where(
        Message.conversation_id == bindparam("conversation_id"),
        *WAITING_TERMS,
        Message.channel.in_(bindparam("channels", expanding=True)),
    )
    .order_by(Message.id)
    .limit(1)
)
# No channel term: SQLite would then pick the unique (channel, external_id) index and read
# every message of the channel, not the small index of waiting ones.
LEFT_WAITING = select(Message.conversation_id, Message.channel).where(
    *WAITING_TERMS, Message.created_at < bindparam("cutoff")
)


@dataclass(eq=False)
class Lease:
    """One drain's hold on a conversation. Its token is its own, so a late release can
    never free the hold of the drain after it (on the same replica or another)."""

    worker: InboundWorker
    conversation_id: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    next_message: Message | None = None  # the oldest waiting message, to process next
    settled: bool = False

    async def settle(self, session: AsyncSession) -> None:
        """In the handler's last transaction, after the message is marked processed and
        before the commit: release the conversation, or keep it for the next message."""
        await self.worker.settle_in(session, self)
        self.settled = True


# Processes one stored inbound message, marks it processed and settles the lease, in its
# last transaction (a handler that fails or does not settle is settled for).
InboundHandler = Callable[[Message, Lease], Awaitable[None]]


class InboundWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        handlers: Mapping[str, InboundHandler],
        lease: timedelta = timedelta(seconds=60),
        stale_after: timedelta = timedelta(seconds=30),
    ) -> None:
        self.sessions = sessions
        self.handlers = dict(handlers)
        self.lease = lease
        self.stale_after = stale_after
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, channel: str, handler: InboundHandler) -> None:
        """Process ``channel``'s stored messages with ``handler`` (a webhook channel)."""
        self.handlers[channel] = handler

    def schedule(self, lease: Lease) -> None:
        """Drain the conversation the webhook claimed, in the background (the webhook
        returns meanwhile)."""
        task = asyncio.create_task(self.drain(lease.conversation_id, lease))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Let scheduled work finish (shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def drain(self, conversation_id: str, lease: Lease | None = None) -> None:
        lease = lease or await self._acquire(conversation_id)
        failures = 0  # transient ones, of the message at the head of the conversation
        while lease is not None and lease.next_message is not None:
            message, lease.next_message, lease.settled = lease.next_message, None, False
            try:
                await self._process(message, lease)
            finally:
                if not lease.settled:
                    await retrying(lambda: self._settle_alone(lease), "settling a lease")
            if lease.next_message is None or lease.next_message.id != message.id:
                failures = 0
                continue
            failures += 1  # the same message again: its turn lost a race and did nothing
            if failures >= ATTEMPTS:  # leave it to the sweep, after a pause
                await retrying(lambda: self._release_alone(lease), "releasing a lease")
                return
            await asyncio.sleep(0.05 * failures)

    async def claim(self, session: AsyncSession, conversation_id: str) -> Lease | None:
        """In the transaction that stored a message (after the write to its conversation
        row): the lease if it was free, with the oldest waiting message; ``None`` if
        another drain holds it and will find the message when it settles."""
        lease = Lease(self, conversation_id)
        if not await self._take(session, lease):
            return None
        lease.next_message = await self._oldest_waiting(session, conversation_id)
        return lease

    async def settle_in(self, session: AsyncSession, lease: Lease) -> None:
        """Release first (the row write orders us after any webhook that stored a
        message meanwhile), then look: keep the lease if a message waits."""
        await self._release(session, lease)
        lease.next_message = await self._oldest_waiting(session, lease.conversation_id)
        if lease.next_message is not None and not await self._take(session, lease):
            lease.next_message = None  # ours had run out and another drain holds it

    async def sweep(self) -> None:
        """Drain conversations whose messages wait longer than they should (a crash)."""
        cutoff = utcnow() - self.stale_after
        async with self.sessions() as session:
            waiting = await session.execute(LEFT_WAITING, {"cutoff": cutoff})
            ours = (row.conversation_id for row in waiting if row.channel in self.handlers)
            conversation_ids = list(dict.fromkeys(ours))
        for conversation_id in conversation_ids:
            await self.drain(conversation_id)

    async def _process(self, message: Message, lease: Lease) -> None:
        handler = self.handlers[message.channel]
        try:
            await handler(message, lease)
        except Exception as exc:
            lease.settled = False  # its transaction did not commit, or may not have
            if is_transient(exc):  # it did nothing: the message waits, and is run again
                logger.warning("inbound message %s lost a database race; again", message.id)
                return
            # a bug must not wedge the conversation: log, move on
            logger.exception("inbound message %s failed; marked processed", message.id)
            await retrying(lambda: self._mark_processed(message.id), "marking a failed message")

    async def _mark_processed(self, message_id: int) -> None:
        async with self.sessions() as session:
            await session.execute(
                update(Message).where(Message.id == message_id).values(processed_at=utcnow())
            )
            await session.commit()

    async def _release_alone(self, lease: Lease) -> None:
        async with self.sessions() as session:
            await self._release(session, lease)
            await session.commit()

    @staticmethod
    async def _release(session: AsyncSession, lease: Lease) -> None:
        """Free the conversation, if ``lease`` still holds it (its token only)."""
        await session.execute(
            RELEASE, {"conversation_id": lease.conversation_id, "token": lease.token}
        )

    async def _take(self, session: AsyncSession, lease: Lease) -> bool:
        """The conversation for ``lease`` if nobody holds it (or their lease ran out)."""
        return await take_lease(
            session, Conversation, lease.conversation_id, utcnow(), self.lease,
            lease_owner=lease.token,
        )  # fmt: skip

    async def _oldest_waiting(self, session: AsyncSession, conversation_id: str) -> Message | None:
        return await session.scalar(
            OLDEST_WAITING, {"conversation_id": conversation_id, "channels": list(self.handlers)}
        )

    async def _acquire(self, conversation_id: str) -> Lease | None:
        """Take the conversation's lease if it is free and a message waits."""
        async with self.sessions() as session:
            lease = await self.claim(session, conversation_id)
            if lease is None:
                await session.rollback()
                return None
            if lease.next_message is None:
                await self.settle_in(session, lease)
            await session.commit()
        return lease if lease.next_message is not None else None

    async def _settle_alone(self, lease: Lease) -> None:
        """Settle in a transaction of its own, for a handler that did not (it failed, or
        its commit did): idempotent, as the release names our token only."""
        async with self.sessions() as session:
            await self.settle_in(session, lease)
            await session.commit()
