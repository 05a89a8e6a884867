"""applications a backend refused or never took: why, and since when they need a person

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEEDS_ATTENTION = sa.text("stage = 'needs_attention'")


def upgrade() -> None:
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_attempt_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("last_error_kind", sa.String(length=16)))
        batch_op.add_column(sa.Column("last_error_status", sa.Integer()))
        batch_op.add_column(sa.Column("last_error_excerpt", sa.String(length=300)))
        batch_op.add_column(
            sa.Column("same_error_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("needs_attention_since", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("needs_attention_reason", sa.String(length=32)))
    op.create_index(
        "ix_applications_needs_attention",
        "applications",
        ["needs_attention_since"],
        sqlite_where=NEEDS_ATTENTION,
        postgresql_where=NEEDS_ATTENTION,
    )


def downgrade() -> None:
    op.drop_index("ix_applications_needs_attention", table_name="applications")
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_column("needs_attention_reason")
        batch_op.drop_column("needs_attention_since")
        batch_op.drop_column("same_error_count")
        batch_op.drop_column("last_error_excerpt")
        batch_op.drop_column("last_error_status")
        batch_op.drop_column("last_error_kind")
        batch_op.drop_column("first_attempt_at")
