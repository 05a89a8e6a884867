"""Suite-wide guards: no test may reach anything but loopback; the gateway database of
the run (``CIVICGATE_TEST_DB``, see ``support/db.py``): one per test, dropped after it,
and the tests that only make sense on the other database skipped."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from support import db
from support.servers import ThreadedServer, serve
from support.twilio_double import TwilioDouble

_real_connect = socket.socket.connect
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        if not _is_loopback(str(host)):
            raise RuntimeError(f"test tried to reach a non-loopback address: {host}")
    return _real_connect(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host is not None and not _is_loopback(
        str(host if not isinstance(host, bytes) else host.decode())
    ):
        raise RuntimeError(f"test tried to resolve a non-loopback host: {host}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect = _real_connect  # type: ignore[method-assign]
        socket.getaddrinfo = _real_getaddrinfo


def pytest_configure(config: pytest.Config) -> None:
    try:
        db.selected()
    except RuntimeError as error:
        raise pytest.UsageError(str(error)) from None
    if db.on_postgresql() and not os.environ.get("TEST_DATABASE_URL"):
        raise pytest.UsageError(
            "CIVICGATE_TEST_DB=postgresql needs TEST_DATABASE_URL (a PostgreSQL server with a"
            " superuser), or run through scripts/test-services.sh, which starts one"
        )


def pytest_report_header() -> str:
    return f"gateway database: {db.describe()}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    selected = db.selected()
    for item in items:
        for marker, only in (("sqlite_only", db.SQLITE), ("postgresql_only", db.POSTGRESQL)):
            if only != selected and item.get_closest_marker(marker) is not None:
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"{marker}: runs with CIVICGATE_TEST_DB={only}, not {selected}"
                    )
                )


@pytest.fixture(autouse=True, scope="session")
def _gateway_databases() -> Iterator[None]:
    """Drop what is left (session fixtures' databases, the template) when the run ends."""
    try:
        yield
    finally:
        db.close()


@pytest.fixture(autouse=True)
def _fresh_gateway_database() -> Iterator[None]:
    """The databases a test created (``support.db.database_url``) are dropped after it."""
    mark = db.checkpoint()
    yield
    db.release(mark)


@pytest.fixture
def twilio() -> Iterator[tuple[TwilioDouble, ThreadedServer]]:
    """A Twilio REST double on loopback, and its server."""
    double = TwilioDouble()
    with serve(double.app()) as server:
        yield double, server
