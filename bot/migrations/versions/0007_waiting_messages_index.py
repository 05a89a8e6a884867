"""an index of the inbound messages waiting, by conversation

0006's partial index held every outbound message too (they are never "processed"), and
the drain's look-up of a conversation's next message read its whole history.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = sa.text("processed_at IS NULL AND direction = 'INBOUND'")
UNPROCESSED = sa.text("processed_at IS NULL")


def upgrade() -> None:
    op.drop_index("ix_messages_unprocessed", table_name="messages")
    op.create_index(
        "ix_messages_waiting",
        "messages",
        ["conversation_id", "id"],
        sqlite_where=WAITING,
        postgresql_where=WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_waiting", table_name="messages")
    op.create_index(
        "ix_messages_unprocessed",
        "messages",
        ["channel", "created_at"],
        sqlite_where=UNPROCESSED,
        postgresql_where=UNPROCESSED,
    )
