"""The SQLite engine runs each statement in one trip to aiosqlite's thread, and still
behaves as SQLAlchemy expects of a DB-API driver (rows, rowcount, lastrowid, errors)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, String, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.db import sqlite
from bot.db.session import create_engine, session_factory
from bot.db.sqlite import OneTripConnection


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    made = create_engine(f"sqlite:///{tmp_path / 'one-trip.db'}")
    async with made.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield made
    await made.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the callables sent to the connection's thread, in order."""
    sent: list[str] = []
    original = OneTripConnection._execute

    async def counted(self: OneTripConnection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(OneTripConnection, "_execute", counted)
    return sent


async def test_orm_round_trip_rows_keys_and_rowcount(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions() as session:
        session.add_all([Item(name="passport"), Item(name="birth certificate")])
        await session.commit()
    async with sessions() as session:
        names = list(await session.scalars(select(Item.name).order_by(Item.id)))
        assert names == ["passport", "birth certificate"]
        changed = await session.execute(update(Item).values(name=Item.name + "!"))
        assert changed.rowcount == 2  # type: ignore[attr-defined]
        await session.commit()
    async with engine.begin() as connection:
        inserted = await connection.execute(insert(Item).values(name="permit"))
        assert inserted.lastrowid == 3  # type: ignore[attr-defined]
        assert (await connection.execute(select(Item).where(Item.id == 99))).first() is None
        gone = await connection.execute(delete(Item).where(Item.name == "permit"))
        assert gone.rowcount == 1  # type: ignore[attr-defined]


async def test_executemany_and_constraint_errors_reach_sqlalchemy(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(insert(Item), [{"name": f"n{i}"} for i in range(5)])
        count = await connection.scalar(text("SELECT count(*) FROM items"))
        assert count == 5
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(insert(Item).values(name="n1"))
    async with engine.connect() as connection:  # the failed transaction was rolled back
        assert await connection.scalar(text("SELECT count(*) FROM items")) == 5


async def test_statements_run_on_the_loop_and_only_the_transaction_end_is_a_trip(
    engine: AsyncEngine, trips: list[str]
) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))  # the connection's own set-up is done
        trips.clear()
        rows = (await connection.execute(select(Item.id, Item.name))).all()
        await connection.execute(insert(Item).values(name="one"))
    assert rows == []
    assert trips == ["_waiting"]  # the rollback of the open write, on the thread
    trips.clear()
    async with session_factory(engine)() as session:  # read-only: nothing to end
        assert list(await session.scalars(select(Item.name))) == []
    assert trips == []


async def test_a_lock_held_elsewhere_is_waited_for_on_the_thread(
    engine: AsyncEngine, tmp_path: Path, trips: list[str]
) -> None:
    """Another process's write transaction: the statement fails at once on the loop
    (busy timeout 0) and runs again on the thread, which waits for the lock."""
    other = sqlite3.connect(tmp_path / "one-trip.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO items (name) VALUES ('theirs')")
    sessions = session_factory(engine)

    async def ours() -> None:
        async with sessions() as session:
            session.add(Item(name="ours"))
            await session.commit()

    writing = asyncio.create_task(ours())
    await asyncio.sleep(0.3)
    assert not writing.done()  # waiting for the lock, not failed
    loop_ticks = 0
    while loop_ticks < 3:  # and the event loop is free meanwhile
        await asyncio.sleep(0.01)
        loop_ticks += 1
    other.execute("COMMIT")
    await asyncio.wait_for(writing, 10)
    other.close()
    async with sessions() as session:
        assert list(await session.scalars(select(Item.name).order_by(Item.id))) == [
            "theirs",
            "ours",
        ]
    assert "_waiting" in trips


async def test_a_long_read_moves_to_the_thread_and_gives_the_same_answer(
    engine: AsyncEngine, trips: list[str]
) -> None:
    long_read = text(
        "SELECT count(*), sum(i) FROM (WITH RECURSIVE n(i) AS"
        " (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) SELECT i FROM n)"
    )
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        trips.clear()
        assert (await connection.execute(long_read)).one() == (300000, 45000150000)
        assert trips == ["_waiting"]  # interrupted on the loop (over budget), then run there
        trips.clear()
        assert await connection.scalar(text("SELECT 2")) == 2
        assert trips == []


@pytest.mark.parametrize("steps", [1, 8, 50, 120, 400])
async def test_a_schema_change_is_never_interrupted_and_loses_no_rows(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, steps: int
) -> None:
    """What Alembic's batch mode does on SQLite, with every interruptible statement
    interrupted after ``steps`` steps. Interrupting the DROP or the RENAME rolled back
    the whole transaction; run again alone, it dropped the table with the copied rows."""
    async with engine.begin() as connection:
        await connection.execute(insert(Item), [{"name": "passport"}, {"name": "licence"}])
    monkeypatch.setattr(sqlite, "INLINE_BUDGET", 0.0)
    monkeypatch.setattr(sqlite, "_CHECK_EVERY", steps)
    async with engine.begin() as connection:
        for statement in (
            "CREATE TABLE _tmp_items (id INTEGER PRIMARY KEY, name VARCHAR UNIQUE, note TEXT)",
            "INSERT INTO _tmp_items (id, name) SELECT id, name FROM items",
            "DROP TABLE items",
            "ALTER TABLE _tmp_items RENAME TO items",
        ):
            await connection.execute(text(statement))
    async with engine.connect() as connection:
        columns = [row[1] for row in await connection.execute(text("PRAGMA table_info(items)"))]
        names = (await connection.scalars(text("SELECT name FROM items ORDER BY id"))).all()
    assert columns == ["id", "name", "note"]
    assert names == ["passport", "licence"]


async def test_a_read_interrupted_inside_a_write_keeps_the_write(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "INLINE_BUDGET", 0.0)
    monkeypatch.setattr(sqlite, "_CHECK_EVERY", 1)
    async with engine.begin() as connection:
        await connection.execute(insert(Item).values(name="passport"))
        assert await connection.scalar(select(Item.name)) == "passport"  # interrupted, rerun
        await connection.execute(insert(Item).values(name="licence"))
    async with engine.connect() as connection:
        names = (await connection.scalars(select(Item.name).order_by(Item.id))).all()
    assert names == ["passport", "licence"]


async def test_writers_take_turns(engine: AsyncEngine, trips: list[str]) -> None:
    """Concurrent write transactions in one process never meet SQLite's lock: each waits
    in the event loop for the one before to commit."""
    sessions = session_factory(engine)
    order: list[str] = []

    async def write(name: str) -> None:
        async with sessions() as session:
            session.add(Item(name=name))
            await session.flush()
            order.append(f"{name} holds")
            await asyncio.sleep(0.05)  # the transaction spans awaits, as real ones do
            await session.commit()
            order.append(f"{name} commits")

    async def connect() -> None:  # each new connection's PRAGMAs are trips of their own
        async with sessions() as session:
            await session.execute(select(1))
            await asyncio.sleep(0.01)

    await asyncio.gather(*(connect() for _ in range(5)))
    trips.clear()
    await asyncio.gather(*(write(f"w{i}") for i in range(5)))
    holders = order[::2]
    assert order == [
        f"{event.split()[0]} {what}" for event in holders for what in ("holds", "commits")
    ]
    assert trips.count("_waiting") == 5  # the commits; no write waited on the thread
    async with sessions() as session:
        assert len(list(await session.scalars(select(Item.id)))) == 5
