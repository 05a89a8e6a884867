"""Short leases on rows (conversations, deliveries, applications), the one way replicas
share background work: a conditional UPDATE succeeds for exactly one of them."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Update, bindparam, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import Application, Conversation, Delivery, table_of, utcnow

Leased = type[Conversation] | type[Delivery] | type[Application]


def lease_free(model: Leased, now: datetime) -> ColumnElement[bool]:
    """Nobody holds the row, or their lease ran out (a crashed replica)."""
    return or_(model.lease_until.is_(None), model.lease_until < now)


async def take_lease(
    session: AsyncSession,
    model: Leased,
    row_id: Any,
    now: datetime,
    duration: timedelta,
    *conditions: ColumnElement[bool],
    **values: Any,
) -> bool:
    """Claim the row for ``duration`` if it is free (and ``conditions`` hold), in the
    caller's transaction; whether this caller won."""
    if conditions:
        statement = (
            update(model)
            .where(model.id == row_id, lease_free(model, now), *conditions)
            .values(lease_until=now + duration, **values)
        )
        result = await session.execute(statement)
    else:  # the per-message case (the inbound lease): a statement built once
        parameters = {f"new_{key}": value for key, value in values.items()}
        result = await session.execute(
            _plain_take(model, tuple(values)),
            {"row_id": row_id, "now": now, "until": now + duration, **parameters},
        )
    return bool(getattr(result, "rowcount", 0))


@functools.cache
def _plain_take(model: Leased, keys: tuple[str, ...]) -> Update:
    """:func:`take_lease` without extra conditions, on the table: building the statement
    cost more than running it, and the inbound lease runs it for every message."""
    columns = table_of(model).c
    return (
        update(table_of(model))
        .where(
            columns.id == bindparam("row_id"),
            or_(columns.lease_until.is_(None), columns.lease_until < bindparam("now")),
        )
        .values(lease_until=bindparam("until"), **{key: bindparam(f"new_{key}") for key in keys})
    )


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    model: Leased,
    row_id: Any,
    duration: timedelta,
    *conditions: ColumnElement[bool],
) -> bool:
    """:func:`take_lease` in a transaction of its own (claim, then work outside it)."""
    async with sessions() as session:
        won = await take_lease(session, model, row_id, utcnow(), duration, *conditions)
        await session.commit()
    return won


async def lock_application(
    session: AsyncSession, application_id: str, stage: str | None = None
) -> bool:
    """Lock an application's row for the rest of the caller's transaction without
    changing it (a no-op UPDATE: a row lock on PostgreSQL, the write lock on SQLite), so
    that a check-then-write on it happens once across replicas. False if there is no such
    row (in ``stage``, when given)."""
    conditions = [Application.id == application_id]
    if stage is not None:
        conditions.append(Application.stage == stage)
    result = await session.execute(
        update(Application)
        .where(*conditions)
        .values(updated_at=Application.updated_at)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
