from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.session import create_engine, session_factory
from support.db import database_url
from support.driver import ActionDriver
from support.servers import ThreadedServer
from support.stack import gateway, gateway_settings, migrate, reference_backend


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ThreadedServer]:
    with reference_backend(tmp_path) as server:
        yield server


@pytest.fixture
def gateway_server(tmp_path: Path, backend: ThreadedServer) -> Iterator[ThreadedServer]:
    with gateway(gateway_settings(tmp_path, backend.url)) as server:
        yield server


@pytest.fixture
def driver(tmp_path: Path, gateway_server: ThreadedServer) -> ActionDriver:
    return ActionDriver(gateway_server.url, tmp_path, "+15145550100")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """The test's gateway database, migrated; its directory."""
    migrate(database_url(tmp_path))  # (runs its own event loop: not in an async fixture)
    return tmp_path


@pytest.fixture
async def sessions(database: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url(database))
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()
