"""The background lease on a conversation: claimed with the stored message, handed on by
the handler's own last transaction, never lost between a release and a failed claim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.conversation import ConversationService
from bot.db.models import Base, Conversation, Message, utcnow
from bot.db.session import create_engine, session_factory
from bot.inbound import InboundWorker, Lease
from bot.rasa_client import RasaClient
from bot.settings import Settings
from channels.base import IncomingMessage
from support.db import database_url

SENDER = "+15145550123"


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url(tmp_path, "leases", empty=True))
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield session_factory(engine)
    await engine.dispose()


class Recorder:
    """A handler that marks each message processed and settles, as real handlers do;
    it can be held mid-message, and made to fail on a given text."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], fail_on: str = "") -> None:
        self.sessions, self.fail_on = sessions, fail_on
        self.seen: list[str] = []
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()

    async def __call__(self, message: Message, lease: Lease) -> None:
        self.seen.append(message.text)
        self.started.set()
        await self.release.wait()
        if message.text == self.fail_on:
            raise RuntimeError("a bug in the handler")
        async with self.sessions() as session:
            await session.execute(
                update(Message).where(Message.id == message.id).values(processed_at=utcnow())
            )
            await lease.settle(session)
            await session.commit()


def service(sessions: async_sessionmaker[AsyncSession]) -> ConversationService:
    return ConversationService(Settings(), sessions, RasaClient("http://127.0.0.1:9"))


async def accept(
    conversations: ConversationService, worker: InboundWorker, text: str, sid: str
) -> Lease | None:
    incoming = IncomingMessage(channel="sms", sender=SENDER, text=text, external_id=sid)
    accepted = await conversations.accept(incoming, claim=worker.claim)
    assert accepted is not None
    return accepted.lease


async def lease_row(sessions: async_sessionmaker[AsyncSession]) -> tuple[str | None, bool]:
    async with sessions() as session:
        owner, until = (
            await session.execute(select(Conversation.lease_owner, Conversation.lease_until))
        ).one()
    return owner, until is not None


async def unprocessed(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Message.text).where(Message.processed_at.is_(None)).order_by(Message.id)
        )
        return list(rows)


async def test_messages_stored_while_one_is_processed_are_handed_on_in_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    handler = Recorder(sessions)
    worker = InboundWorker(sessions, {"sms": handler})
    conversations = service(sessions)
    handler.release.clear()
    first = await accept(conversations, worker, "one", "SM1")
    assert first is not None and first.next_message is not None
    worker.schedule(first)
    await handler.started.wait()
    # While "one" is processed, the webhooks of "two" and "three" find the lease taken:
    # no drain of their own, the holder must find them when it settles.
    assert await accept(conversations, worker, "two", "SM2") is None
    assert await accept(conversations, worker, "three", "SM3") is None
    handler.release.set()
    await worker.wait_idle()
    assert handler.seen == ["one", "two", "three"]
    assert await unprocessed(sessions) == []
    assert await lease_row(sessions) == (None, False)
    # Free again: the next message's webhook claims it.
    fourth = await accept(conversations, worker, "four", "SM4")
    assert fourth is not None and fourth.next_message is not None
    assert fourth.next_message.text == "four"
    assert await lease_row(sessions) == (fourth.token, True)


async def test_a_failing_handler_is_settled_for_and_the_next_message_still_runs(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    handler = Recorder(sessions, fail_on="boom")
    worker = InboundWorker(sessions, {"sms": handler})
    conversations = service(sessions)
    handler.release.clear()
    first = await accept(conversations, worker, "boom", "SM1")
    assert first is not None
    worker.schedule(first)
    await handler.started.wait()
    assert await accept(conversations, worker, "after", "SM2") is None
    handler.release.set()
    await worker.wait_idle()
    assert handler.seen == ["boom", "after"]
    assert await unprocessed(sessions) == []
    assert await lease_row(sessions) == (None, False)


async def test_a_late_settle_never_frees_the_lease_of_the_drain_after_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker = InboundWorker(sessions, {"sms": Recorder(sessions)})
    conversations = service(sessions)
    stale = await accept(conversations, worker, "one", "SM1")
    assert stale is not None
    async with sessions() as session:  # its lease ran out; another drain claims it
        await session.execute(update(Conversation).values(lease_until=utcnow()))
        await session.commit()
    current = await accept(conversations, worker, "two", "SM2")
    assert current is not None and current.token != stale.token
    async with sessions() as session:
        await stale.settle(session)
        await session.commit()
    assert stale.next_message is None  # it must not go on to process what it no longer holds
    assert await lease_row(sessions) == (current.token, True)


async def test_a_duplicate_message_takes_no_lease(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker = InboundWorker(sessions, {"sms": Recorder(sessions)})
    conversations = service(sessions)
    assert await accept(conversations, worker, "one", "SM1") is not None
    async with sessions() as session:
        await session.execute(update(Conversation).values(lease_owner=None, lease_until=None))
        await session.commit()
    incoming = IncomingMessage(channel="sms", sender=SENDER, text="one", external_id="SM1")
    assert await conversations.accept(incoming, claim=worker.claim) is None
    assert await lease_row(sessions) == (None, False)
