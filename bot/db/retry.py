"""Transactions that lost a race, told apart from real failures, and run again.

On PostgreSQL two transactions can still meet in a deadlock or a serialization failure
(another replica, a provider's retry arriving at the same moment); on SQLite a writer can
find the database locked past its timeout. Such a transaction did nothing: running it
again is right, and turning it into an HTTP 500 or a message marked processed without a
reply is wrong.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# serialization_failure, deadlock_detected, lock_not_available (lock_timeout)
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
ATTEMPTS = 5


def is_transient(exc: BaseException) -> bool:
    """A failure that running the same transaction again can cure."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:  # the connection dropped (a database restart, a failover)
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in TRANSIENT_SQLSTATES:
        return True
    return "database is locked" in str(exc.orig)  # SQLite, past its busy timeout


async def retrying(work: Callable[[], Awaitable[T]], what: str, attempts: int = ATTEMPTS) -> T:
    """``work()`` (one whole transaction, opened inside it), again after a transient
    failure, with a short random pause so the two racers do not meet again."""
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except DBAPIError as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            code = getattr(exc.orig, "sqlstate", None) or type(exc.orig).__name__
            logger.warning("%s: transient database failure (%s), attempt %d", what, code, attempt)
            await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)  # noqa: S311
    raise AssertionError("unreachable")
