"""The statements every message runs read by index, never a table or a conversation's
whole history: a citizen keeps one conversation for years and the messages table grows
with every message ever exchanged. Checked with SQLite's EXPLAIN QUERY PLAN on the
statements as SQLAlchemy sends them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from bot.actions.context import DRAFT_OF
from bot.actions.router import CONVERSATION_AND_CITIZEN, LANGUAGE_OF, LATEST_INBOUND
from bot.actions.status import BY_REFERENCE
from bot.conversation import FIND_SENDER, LAST_MENU, SENDER_OF, TOUCH
from bot.db.models import Base
from bot.handoff import INVOLVED
from bot.inbound import LEFT_WAITING, OLDEST_WAITING, RELEASE
from bot.outbox import REACHABLE
from bot.sms import RECENT_INBOUND

pytestmark = pytest.mark.sqlite_only  # SQLite's own: skipped when CIVICGATE_TEST_DB=postgresql

NOW = datetime(2026, 12, 3, tzinfo=UTC)
VALUES: dict[str, Any] = {"channels": ["sms", "telegram"], "since": NOW, "cutoff": NOW}

# statement, the index it must use (None: any search by key)
STATEMENTS = {
    "next waiting message of a conversation": (OLDEST_WAITING, "ix_messages_waiting"),
    "sweep of messages left waiting": (LEFT_WAITING, "ix_messages_waiting"),
    "last menu sent": (LAST_MENU, "ix_messages_conversation_created"),
    "latest inbound message (its intent)": (LATEST_INBOUND, "ix_messages_conversation_created"),
    "messages in the flood window": (RECENT_INBOUND, "ix_messages_conversation_created"),
    "sender by phone number": (FIND_SENDER, None),
    "sender of a conversation": (SENDER_OF, None),
    "conversation touched": (TOUCH, None),
    "lease released": (RELEASE, None),
    "conversation and citizen of an action": (CONVERSATION_AND_CITIZEN, None),
    "language of an NLG call": (LANGUAGE_OF, None),
    "application draft": (DRAFT_OF, None),
    "application by reference": (BY_REFERENCE, None),
    "handoff involving the citizen": (INVOLVED, None),
    "reachable recipient": (REACHABLE, None),
}


@pytest.fixture(scope="module")
def engine() -> Iterator[sa.Engine]:
    made = sa.create_engine("sqlite://")
    Base.metadata.create_all(made)
    yield made
    made.dispose()


def query_plan(engine: sa.Engine, statement: sa.Executable) -> list[str]:
    """SQLite's plan for ``statement`` as SQLAlchemy compiles and binds it."""
    params = {
        name: VALUES.get(name, NOW if "until" in name or "now" in name else "x")
        for name, value in statement.compile().params.items()
        if value is None
    }
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, sql: str, parameters: Any, *_: Any) -> None:
        sent.append((sql, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        with engine.connect() as connection:
            connection.execute(statement, params)
            sql, parameters = sent[-1]
            plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters)
            return [row[3] for row in plan]
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)


@pytest.mark.parametrize("name", STATEMENTS)
def test_hot_path_statement_reads_by_index(engine: sa.Engine, name: str) -> None:
    statement, index = STATEMENTS[name]
    plan = query_plan(engine, statement)
    assert plan, name
    assert not [step for step in plan if "TEMP B-TREE" in step], plan  # no sort of all rows
    for step in plan:
        if step.startswith("SCAN"):  # a full scan only of the (usually empty) waiting index
            assert step == "SCAN messages USING INDEX ix_messages_waiting", plan
        else:
            assert step.startswith(("SEARCH", "MULTI-INDEX OR", "INDEX ")), plan
    if index is not None:
        assert any(f"INDEX {index} " in step or step.endswith(index) for step in plan), plan
