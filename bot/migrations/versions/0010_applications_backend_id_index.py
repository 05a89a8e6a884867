"""applications found by the backend's id: a backend's stage webhook names it so

The reference backend's stage webhooks name an application by the backend's own
reference, stored as ``backend_id`` (the citizen keeps the gateway's reference, issue 24);
indexed so that an event does not scan the table.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 01:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_applications_backend_id", "applications", ["backend_id"])


def downgrade() -> None:
    op.drop_index("ix_applications_backend_id", table_name="applications")
