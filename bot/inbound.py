"""Background processing of inbound messages: in order per conversation, on any replica.

Webhook channels (SMS) store a message, answer the provider at once and process it
here. A short lease on the conversation row makes one replica at a time drain its
unprocessed messages, oldest first; whoever fails to take the lease leaves the message
to the holder, which looks again after releasing it. A periodic sweep picks up what a
crashed replica left behind once its lease has expired.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

from sqlalchemy import ColumnElement, Select, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.leases import take_lease
from bot.db.models import Conversation, Direction, Message, utcnow

logger = logging.getLogger(__name__)

# Processes one stored inbound message and marks it processed (in its own transaction).
InboundHandler = Callable[[Message], Awaitable[None]]


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
        self.owner = uuid.uuid4().hex
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, channel: str, handler: InboundHandler) -> None:
        """Process ``channel``'s stored messages with ``handler`` (a webhook channel)."""
        self.handlers[channel] = handler

    def schedule(self, conversation_id: str) -> None:
        """Drain the conversation in the background (the webhook returns meanwhile)."""
        task = asyncio.create_task(self.drain(conversation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Let scheduled work finish (shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def drain(self, conversation_id: str) -> None:
        while True:
            taken, message = await self._acquire(conversation_id)
            if not taken:
                return  # another worker holds the lease and will see our message
            try:
                while message is not None:
                    await self._process(message)
                    message = await self._renew_for_next(conversation_id)
            finally:
                waiting = await self._release(conversation_id)
            if not waiting:
                return  # nothing arrived between our last look and the release

    async def sweep(self) -> None:
        """Drain conversations whose messages wait longer than they should (a crash)."""
        cutoff = utcnow() - self.stale_after
        async with self.sessions() as session:
            waiting = await session.scalars(
                select(Message.conversation_id)
                .where(
                    Message.direction == Direction.INBOUND,
                    Message.processed_at.is_(None),
                    Message.channel.in_(self.handlers),
                    Message.created_at < cutoff,
                )
                .distinct()
            )
            conversation_ids = list(waiting)
        for conversation_id in conversation_ids:
            await self.drain(conversation_id)

    async def _process(self, message: Message) -> None:
        handler = self.handlers[message.channel]
        try:
            await handler(message)
        except Exception:  # a bug must not wedge the conversation: log, move on
            logger.exception("inbound message %s failed; marked processed", message.id)
            async with self.sessions() as session:
                await session.execute(
                    update(Message).where(Message.id == message.id).values(processed_at=utcnow())
                )
                await session.commit()

    def _mine(self, conversation_id: str) -> ColumnElement[bool]:
        return and_(Conversation.id == conversation_id, Conversation.lease_owner == self.owner)

    def _oldest_waiting(self, conversation_id: str) -> Select[Message]:
        return (
            select(Message)
            .where(
                Message.conversation_id == conversation_id,
                Message.direction == Direction.INBOUND,
                Message.processed_at.is_(None),
                Message.channel.in_(self.handlers),
            )
            .order_by(Message.id)
            .limit(1)
        )

    async def _acquire(self, conversation_id: str) -> tuple[bool, Message | None]:
        """Take the conversation's lease if it is free; and its oldest waiting message."""
        now = utcnow()
        async with self.sessions() as session:
            taken = await take_lease(
                session, Conversation, conversation_id, now, self.lease, lease_owner=self.owner
            )
            if not taken:
                await session.rollback()
                return False, None
            message = await session.scalar(self._oldest_waiting(conversation_id))
            await session.commit()
        return True, message

    async def _renew_for_next(self, conversation_id: str) -> Message | None:
        """The oldest waiting message, with the lease extended to process it."""
        async with self.sessions() as session:
            message = await session.scalar(self._oldest_waiting(conversation_id))
            if message is not None:
                await session.execute(
                    update(Conversation)
                    .where(self._mine(conversation_id))
                    .values(lease_until=utcnow() + self.lease)
                )
                await session.commit()
        return message

    async def _release(self, conversation_id: str) -> bool:
        """Give the lease back; whether a message is waiting (it arrived while we held it,
        and its webhook found the lease taken)."""
        async with self.sessions() as session:
            await session.execute(
                update(Conversation)
                .where(self._mine(conversation_id))
                .values(lease_owner=None, lease_until=None)
            )
            await session.commit()
            return await session.scalar(self._oldest_waiting(conversation_id)) is not None
