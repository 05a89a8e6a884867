"""The SQLite engine runs each statement in one trip to aiosqlite's thread, and still
behaves as SQLAlchemy expects of a DB-API driver (rows, rowcount, lastrowid, errors)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, String, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


async def test_a_statement_is_one_trip_to_the_thread(engine: AsyncEngine, trips: list[str]) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))  # the connection's own set-up is done
        trips.clear()
        rows = (await connection.execute(select(Item.id, Item.name))).all()
        await connection.execute(insert(Item).values(name="one"))
    assert rows == []
    assert trips == ["_statement", "_statement", "rollback"]
