"""The gateway database of a test, on SQLite or PostgreSQL, and reading it back.

``CIVICGATE_TEST_DB`` (``sqlite``, the default, or ``postgresql``) chooses the gateway
database of the whole pytest run. On PostgreSQL, ``TEST_DATABASE_URL`` names a server
with a superuser (``postgresql://postgres@127.0.0.1:5432/postgres``); every test that
asks for a gateway database gets a fresh one of its own there, a copy of a template the
migrations ran into once per run, dropped when the test ends (``tests/conftest.py``).

``database_url(directory)`` is that database's URL for a test's ``tmp_path``;
``query(directory, sql, **params)`` and ``execute(...)`` read and write it through
SQLAlchemy with named parameters (``:name``), the same SQL on both databases.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

Rows = list[tuple[Any, ...]]

SQLITE, POSTGRESQL = "sqlite", "postgresql"


def selected() -> str:
    """The database this run tests the gateway on: ``CIVICGATE_TEST_DB``."""
    name = os.environ.get("CIVICGATE_TEST_DB", SQLITE).strip().lower() or SQLITE
    if name not in (SQLITE, POSTGRESQL):
        raise RuntimeError(f"CIVICGATE_TEST_DB must be sqlite or postgresql, not {name!r}")
    return name


def on_postgresql() -> bool:
    return selected() == POSTGRESQL


def describe() -> str:
    """The run's database for pytest's header (the server without its password)."""
    if not on_postgresql():
        return "sqlite (a file per test)"
    server = make_url(os.environ.get("TEST_DATABASE_URL", "")).render_as_string()
    return f"postgresql on {server} (a database per test)"


@dataclass
class _Database:
    url: str  # what the gateway is given (async driver)
    sync_url: str  # what the test helpers read it with
    pg_name: str | None = None  # the PostgreSQL database, dropped when released
    engine: Engine | None = None

    def sync_engine(self) -> Engine:
        if self.engine is None:
            # SQLite: a connection per call, as the file may be replaced between calls.
            pool = {"poolclass": NullPool} if self.pg_name is None else {"pool_size": 1}
            self.engine = sa.create_engine(self.sync_url, **pool)  # type: ignore[arg-type]
        return self.engine

    def dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None


class _Server:
    """The PostgreSQL server of ``TEST_DATABASE_URL``: creates and drops test databases."""

    def __init__(self, url: str) -> None:
        server = make_url(url)
        if not server.drivername.startswith("postgres"):
            raise RuntimeError(f"TEST_DATABASE_URL is not a PostgreSQL URL: {url}")
        self.base = server.set(drivername="postgresql")
        # Unique per run: several runs may share one server.
        self.prefix = f"civicgate_{os.getpid()}_{secrets.token_hex(3)}"
        self.admin = sa.create_engine(
            self.base.set(drivername="postgresql+psycopg"),
            isolation_level="AUTOCOMMIT",
            pool_size=1,
        )
        self.template: str | None = None
        self.count = 0
        self.created: list[str] = []

    def url(self, name: str, driver: str) -> str:
        return self.base.set(drivername=driver, database=name).render_as_string(hide_password=False)

    def _create(self, name: str, template: str) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self.created.append(name)

    def _template(self) -> str:
        if self.template is None:
            from support.stack import migrate

            name = f"{self.prefix}_template"
            self._create(name, "template0")
            migrate(self.url(name, "postgresql+asyncpg"))  # disconnects when done
            self.template = name
        return self.template

    def create(self, empty: bool) -> str:
        self.count += 1
        name = f"{self.prefix}_{self.count}"
        self._create(name, "template0" if empty else self._template())
        return name

    def drop(self, name: str) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        for name in reversed(self.created):
            self.drop(name)
        self.admin.dispose()


def fresh_database(server_url: str, prefix: str) -> str:
    """A new, empty database named ``<prefix>_<random>`` on a PostgreSQL server (for the
    benchmarks; the migrations fill it), as a ``postgresql://`` URL."""
    server = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return server.set(drivername="postgresql", database=name).render_as_string(hide_password=False)


_server: _Server | None = None
_databases: dict[tuple[str, str], _Database] = {}


def _postgresql() -> _Server:
    global _server
    if _server is None:
        url = os.environ.get("TEST_DATABASE_URL", "")
        if not url:
            raise RuntimeError(
                "CIVICGATE_TEST_DB=postgresql needs TEST_DATABASE_URL (a server with a"
                " superuser), or run the suite with scripts/with-test-services.sh"
            )
        _server = _Server(url)
    return _server


def database_url(directory: Path, name: str = "gateway", *, empty: bool = False) -> str:
    """The URL of the gateway database ``name`` of the test whose ``tmp_path`` is
    ``directory``: the same URL each call. On SQLite a file in ``directory`` (created by
    the migrations); on PostgreSQL a database of its own, already migrated unless
    ``empty`` (then it has no tables at all, as a new SQLite file)."""
    key = (str(Path(directory).resolve()), name)
    if key not in _databases:
        if on_postgresql():
            server = _postgresql()
            pg_name = server.create(empty)
            database = _Database(
                server.url(pg_name, "postgresql+asyncpg"),
                server.url(pg_name, "postgresql+psycopg"),
                pg_name,
            )
        else:
            file = Path(directory) / f"{name}.db"
            database = _Database(f"sqlite+aiosqlite:///{file}", f"sqlite:///{file}")
        _databases[key] = database
    return _databases[key].url


def sync_engine(directory: Path, name: str = "gateway") -> Engine:
    """A synchronous engine on that database (for the test's own reads and writes)."""
    database_url(directory, name)
    return _databases[(str(Path(directory).resolve()), name)].sync_engine()


def checkpoint() -> int:
    """How many databases exist now: :func:`release` drops those created after it."""
    return len(_databases)


def release(since: int = 0) -> None:
    """Forget (and on PostgreSQL drop) the databases created after ``since``."""
    for key in list(_databases)[since:]:
        database = _databases.pop(key)
        database.dispose()
        if database.pg_name is not None and _server is not None:
            _server.drop(database.pg_name)


def close() -> None:
    """At the end of the run: every database released, the template dropped too."""
    global _server
    release()
    if _server is not None:
        _server.close()
        _server = None


def _bound(sql: str, params: dict[str, Any]) -> sa.TextClause:
    """``sql`` with its datetime parameters typed, so that SQLite stores them as the
    gateway does (UTC text) and PostgreSQL gets a ``timestamptz``."""
    statement = sa.text(sql)
    typed = [
        sa.bindparam(key, type_=sa.DateTime(timezone=True))
        for key, value in params.items()
        if isinstance(value, datetime)
    ]
    return statement.bindparams(*typed) if typed else statement


def _params(params: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.astimezone(UTC) if isinstance(value, datetime) and value.tzinfo else value
        for key, value in params.items()
    }


def query(directory: Path, sql: str, **params: Any) -> Rows:
    """The rows of ``sql`` (named parameters, ``:name``) in the test's gateway database."""
    with sync_engine(directory).connect() as connection:
        result = connection.execute(_bound(sql, params), _params(params))
        return [tuple(row) for row in result]


def execute(directory: Path, sql: str, **params: Any) -> int:
    """Run one writing statement in its own committed transaction; the rows it touched."""
    with sync_engine(directory).begin() as connection:
        result = connection.execute(_bound(sql, params), _params(params))
        return int(result.rowcount)


def as_datetime(value: str | datetime) -> datetime:
    """A stored time read by :func:`query` as aware UTC (SQLite hands back text)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def as_json(value: Any) -> Any:
    """A JSON column read by :func:`query` (SQLite hands back its text)."""
    import json

    return json.loads(value) if isinstance(value, str | bytes) else value


def settled(directory: Path, sql: str, expected: Rows, timeout: float = 10) -> Rows:
    """The rows of ``sql`` once they equal ``expected`` (the gateway records a send just
    after the provider answered it), or as they are after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    rows = query(directory, sql)
    while rows != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = query(directory, sql)
    return rows


def wait_until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
