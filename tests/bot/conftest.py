from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.driver import ActionDriver
from support.servers import ThreadedServer
from support.stack import gateway, gateway_settings, reference_backend


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
