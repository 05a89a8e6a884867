"""SQLite for the async engine, with one trip to the connection's thread per statement.

aiosqlite runs every DB-API step (open a cursor, execute, fetch, close) as its own trip to
the thread that owns the ``sqlite3`` connection, and SQLAlchemy's adapter takes all four
for each statement. Each trip wakes a thread and then the event loop, and on this
project's hot paths the trips cost more CPU than SQLite itself (``docs/performance.md``).
:class:`OneTripConnection` keeps aiosqlite's thread and queue but runs a statement's steps
together in one trip; rows are fetched eagerly, as SQLAlchemy's adapter does anyway for
ordinary cursors.

Writers take turns in the event loop (:class:`WriteTurns`): a transaction's first write
waits for the previous writer's commit in a FIFO queue, instead of in SQLite's busy
handler, which sleeps 1, 2, 5 … up to 100 ms between looks at the lock and so turns a
queue of short transactions into a long latency tail. SQLite's busy timeout stays the
fallback across processes.

It relies on two aiosqlite internals that have been stable since 0.17: ``_execute``
(queue a callable on the connection's thread) and ``_conn`` (the ``sqlite3`` connection).
``pyproject.toml`` bounds the aiosqlite version accordingly.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.engine import make_url

Row = tuple[Any, ...]
_Outcome = tuple[Any, int, int | None, list[Row]]  # description, rowcount, lastrowid, rows
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _writes(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(_WRITES)


class WriteTurns:
    """One writing transaction at a time among a process's connections to one database,
    queued first come, first served (SQLite allows one writer anyway)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:  # an engine reused on a new loop
            self._lock, self._loop = asyncio.Lock(), loop
        try:
            await asyncio.wait_for(self._lock.acquire(), self.timeout)
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None

    def release(self) -> None:
        if self._lock is not None and self._lock.locked():
            self._lock.release()


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
        if _writes(sql):
            await connection.take_write_turn()
        try:
            outcome: _Outcome = await connection._execute(  # type: ignore[no-untyped-call]
                _statement, connection, method, sql, parameters
            )
        finally:
            connection.end_write_turn_if_done()
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
    def __init__(self, *args: Any, writes: WriteTurns | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writes = writes
        self._writing = False

    async def take_write_turn(self) -> None:
        """Before a write that would open a transaction: wait for the writer before."""
        if self._writes is None or self._writing:
            return
        await self._writes.acquire()
        self._writing = True

    def end_write_turn_if_done(self) -> None:
        """After a statement, commit or rollback: the next writer's turn once no
        transaction is open (also when a write failed before opening one)."""
        if self._writing and (self._connection is None or not self._connection.in_transaction):
            self._writing = False
            assert self._writes is not None
            self._writes.release()

    def cursor(self) -> OneTripCursor:  # type: ignore[override]  # no trip to open one
        return OneTripCursor(self)

    async def commit(self) -> None:
        try:
            if not self._idle():  # else nothing to commit: sqlite3 would do nothing either
                await super().commit()
        finally:
            self.end_write_turn_if_done()

    async def rollback(self) -> None:
        """Also what the pool does to every connection it gets back: after a read-only
        session there is no transaction, and the trip would only wake two threads."""
        try:
            if not self._idle():
                await super().rollback()
        finally:
            self.end_write_turn_if_done()

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self.end_write_turn_if_done()

    def _idle(self) -> bool:
        """No transaction open (read without a trip: the connection's statements are
        awaited one at a time, so none runs on its thread now)."""
        connection = self._connection
        return connection is not None and not connection.in_transaction


def one_trip_creator(url: str, timeout: float = 30.0) -> Callable[[], OneTripConnection]:
    """``async_creator`` for ``create_async_engine``: the database that ``url`` names."""
    database = make_url(url).database or ":memory:"

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(
            database, timeout=timeout, check_same_thread=False, uri=database.startswith("file:")
        )

    writes = WriteTurns(timeout)

    def create() -> OneTripConnection:
        connection = OneTripConnection(connector, iter_chunk_size=64, writes=writes)
        connection._thread.daemon = True  # as SQLAlchemy does: never block interpreter exit
        return connection

    return create
