"""SQLite for the async engine, with one trip to the connection's thread per statement.

aiosqlite runs every DB-API step (open a cursor, execute, fetch, close) as its own trip to
the thread that owns the ``sqlite3`` connection, and SQLAlchemy's adapter takes all four
for each statement. Each trip wakes a thread and then the event loop, and on this
project's hot paths the trips cost more CPU than SQLite itself (``docs/performance.md``).
:class:`OneTripConnection` keeps aiosqlite's thread and queue but runs a statement's steps
together in one trip; rows are fetched eagerly, as SQLAlchemy's adapter does anyway for
ordinary cursors.

It relies on two aiosqlite internals that have been stable since 0.17: ``_execute``
(queue a callable on the connection's thread) and ``_conn`` (the ``sqlite3`` connection).
``pyproject.toml`` bounds the aiosqlite version accordingly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.engine import make_url

Row = tuple[Any, ...]
_Outcome = tuple[Any, int, int | None, list[Row]]  # description, rowcount, lastrowid, rows


class OneTripCursor:
    """What SQLAlchemy's aiosqlite adapter needs of a cursor, executed in one trip."""

    arraysize = 1

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Row] = []

    async def execute(self, sql: str, parameters: Any = ()) -> OneTripCursor:
        return await self._run(sqlite3.Connection.execute, sql, parameters)

    async def executemany(self, sql: str, parameters: Sequence[Any]) -> OneTripCursor:
        return await self._run(sqlite3.Connection.executemany, sql, parameters)

    async def _run(
        self, method: Callable[..., sqlite3.Cursor], sql: str, parameters: Any
    ) -> OneTripCursor:
        connection = self._connection
        outcome: _Outcome = await connection._execute(  # type: ignore[no-untyped-call]
            _statement, connection, method, sql, parameters
        )
        self.description, self.rowcount, self.lastrowid, self._rows = outcome
        return self

    async def fetchall(self) -> list[Row]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        count = self.arraysize if size is None else size
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def fetchone(self) -> Row | None:
        return self._rows.pop(0) if self._rows else None

    async def __aiter__(self) -> AsyncIterator[Row]:
        while self._rows:
            yield self._rows.pop(0)

    async def close(self) -> None:
        self._rows = []

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


def _statement(
    connection: OneTripConnection,
    method: Callable[..., sqlite3.Cursor],
    sql: str,
    parameters: Any,
) -> _Outcome:
    """Runs on the connection's thread: the whole statement, its rows, the cursor closed."""
    cursor = method(connection._conn, sql, parameters)
    try:
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneTripConnection(aiosqlite.Connection):
    def cursor(self) -> OneTripCursor:  # type: ignore[override]  # no trip to open one
        return OneTripCursor(self)


def one_trip_creator(url: str, timeout: float = 30.0) -> Callable[[], OneTripConnection]:
    """``async_creator`` for ``create_async_engine``: the database that ``url`` names."""
    database = make_url(url).database or ":memory:"

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(
            database, timeout=timeout, check_same_thread=False, uri=database.startswith("file:")
        )

    def create() -> OneTripConnection:
        connection = OneTripConnection(connector, iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy does: never block interpreter exit
        return connection

    return create
