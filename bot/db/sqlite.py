"""SQLite for the async engine: statements on the event loop unless they would wait.

aiosqlite runs every DB-API step (open a cursor, execute, fetch, close) as its own trip to
the thread that owns the ``sqlite3`` connection. Each trip wakes a thread and then the
event loop, and on this project's hot paths the trips cost several times what SQLite
itself does for these short, indexed statements (``docs/performance.md``). So
:class:`OneTripConnection` runs a statement where it is awaited, and keeps aiosqlite's
thread for what may block: connecting, commit (its fsync), rollback, closing, and any
statement that could not finish at once. That is decided by SQLite, not guessed:

* writers take turns in the event loop (:class:`WriteTurns`): a transaction's first write
  waits for the previous writer's commit in a FIFO queue, so within the process a write
  never meets a locked database (and never SQLite's busy handler, which sleeps 1, 2, 5 …
  up to 100 ms between looks at the lock);
* on the loop the busy timeout is zero: a lock held by another process or engine
  fails the statement at once (with no effect), and it runs again on the thread, with
  the busy timeout;
* a SELECT that runs longer than :data:`INLINE_BUDGET` is interrupted by a progress
  handler (with no effect) and runs again on the thread. Writes are not interrupted
  (SQLite would roll back their whole transaction); this project's writes touch a few
  rows by key. Anything else (schema changes, PRAGMA, ``WITH``) runs on the thread, as
  aiosqlite would: interrupting a schema change also rolls back its transaction.

Rows are fetched eagerly, as SQLAlchemy's adapter does anyway for ordinary cursors.

It relies on two aiosqlite internals that have been stable since 0.17: ``_execute``
(queue a callable on the connection's thread) and ``_conn`` (the ``sqlite3`` connection).
``pyproject.toml`` bounds the aiosqlite version accordingly.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.engine import make_url

Row = tuple[Any, ...]
_Outcome = tuple[Any, int, int | None, list[Row]]  # description, rowcount, lastrowid, rows
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
INLINE_BUDGET = 0.002  # seconds a read may take on the event loop before it moves
_CHECK_EVERY = 1000  # SQLite virtual-machine steps between looks at the budget
_WAIT_ELSEWHERE = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT})


def _writes(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(_WRITES)


def _reads(sql: str) -> bool:
    """Only a plain SELECT may be interrupted: interrupting a schema change (or a write)
    rolls back the whole transaction around it, and running it again alone would then
    apply it without what came before (a batch migration's copied rows)."""
    return sql.lstrip()[:6].upper() == "SELECT"


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
        writing = _writes(sql)
        if not writing and not _reads(sql):  # schema changes, PRAGMA, WITH …: as aiosqlite
            return self._took(
                await connection.on_thread(_statement, connection, method, sql, parameters)
            )
        if writing:
            await connection.take_write_turn()
        try:
            try:
                outcome = _statement_here(connection, method, sql, parameters, writing)
            except sqlite3.OperationalError as exc:
                if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) not in _WAIT_ELSEWHERE:
                    raise
                outcome = await connection.on_thread(
                    _statement, connection, method, sql, parameters
                )
        finally:
            connection.end_write_turn_if_done()
        return self._took(outcome)

    def _took(self, outcome: _Outcome) -> OneTripCursor:
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


def _statement_here(
    connection: OneTripConnection,
    method: Callable[..., sqlite3.Cursor],
    sql: str,
    parameters: Any,
    writing: bool,
) -> _Outcome:
    """The statement on the caller's thread (the event loop), never waiting: a busy
    database or a read over budget raises, with nothing done."""
    if writing:
        return _statement(connection, method, sql, parameters)
    sqlite = connection._conn
    deadline = time.perf_counter() + INLINE_BUDGET
    sqlite.set_progress_handler(lambda: time.perf_counter() > deadline, _CHECK_EVERY)
    try:
        return _statement(connection, method, sql, parameters)
    finally:
        sqlite.set_progress_handler(None, 0)


def _waiting(sqlite: sqlite3.Connection, timeout_ms: int, work: Callable[[], Any]) -> Any:
    """Runs on the connection's thread: ``work`` with the busy timeout, which is zero
    otherwise (on the event loop nothing may wait for a lock)."""
    sqlite.execute(f"PRAGMA busy_timeout={timeout_ms:d}")
    try:
        return work()
    finally:
        sqlite.execute("PRAGMA busy_timeout=0")


class OneTripConnection(aiosqlite.Connection):
    def __init__(
        self,
        *args: Any,
        writes: WriteTurns | None = None,
        busy_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._writes = writes
        self._writing = False
        self._busy_timeout_ms = int(busy_timeout * 1000)

    async def on_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on the connection's thread, allowed to wait for locks."""
        sqlite = self._conn
        return await self._execute(  # type: ignore[no-untyped-call]
            _waiting, sqlite, self._busy_timeout_ms, lambda: function(*args)
        )

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
                await self.on_thread(self._conn.commit)
        finally:
            self.end_write_turn_if_done()

    async def rollback(self) -> None:
        """Also what the pool does to every connection it gets back: after a read-only
        session there is no transaction, and the trip would only wake two threads."""
        try:
            if not self._idle():
                await self.on_thread(self._conn.rollback)
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

    def connector() -> sqlite3.Connection:  # busy timeout 0: see OneTripConnection.on_thread
        return sqlite3.connect(
            database, timeout=0, check_same_thread=False, uri=database.startswith("file:")
        )

    writes = WriteTurns(timeout)

    def create() -> OneTripConnection:
        connection = OneTripConnection(
            connector, iter_chunk_size=64, writes=writes, busy_timeout=timeout
        )
        connection._thread.daemon = True  # as SQLAlchemy does: never block interpreter exit
        return connection

    return create
