"""Reading a test gateway's SQLite database, and waiting for background work to land."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Rows = list[tuple[Any, ...]]


def query(directory: Path, sql: str, *args: Any) -> Rows:
    """The rows of ``sql`` in ``directory/gateway.db``."""
    with sqlite3.connect(directory / "gateway.db") as db:
        return db.execute(sql, args).fetchall()


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
