"""applications whose reference is a backend's id read as a reference: stored as typed back

Before issue 24 a backend id that looked like a reference (an Open311 ``zpn9b29p``) became
the citizen's reference as the backend wrote it, while ``STATUS zpn9b29p`` is looked up
normalised (``ZP-N9B29P``): such references are stored normalised, so that both the one
the citizen was told and the gateway's provisional one find the application. Data only.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 01:40:00
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# service_connectors.catalogue.find_reference as of this revision (kept here: a migration
# must not change when the code does).
_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_PATTERN = re.compile(rf"\b([A-Za-z]{{2}})(\s*-\s*|\s?)([{_ALPHABET}{_ALPHABET.lower()}]{{6}})\b")
_CYRILLIC_LOOKALIKES = str.maketrans("АВЕКМНОРСТХаеорсху", "ABEKMHOPCTXaeopcxy")


def _typed_back(text: str) -> str | None:
    for match in _PATTERN.finditer(text.translate(_CYRILLIC_LOOKALIKES)):
        letters, separator, body = match.groups()
        if body.upper() == "XXXXXX":
            continue
        if "-" in separator or any(ch.isdigit() for ch in body):
            return f"{letters.upper()}-{body.upper()}"
    return None


def upgrade() -> None:
    connection = op.get_bind()
    applications = sa.table(
        "applications",
        sa.column("id", sa.String),
        sa.column("reference", sa.String),
        sa.column("provisional_reference", sa.String),
    )
    rows = connection.execute(
        sa.select(applications.c.id, applications.c.reference).where(
            applications.c.reference.is_not(None),
            applications.c.reference != applications.c.provisional_reference,
        )
    ).all()
    for application_id, reference in rows:
        typed = _typed_back(reference)
        if typed is None or typed == reference:
            continue
        taken = connection.scalar(
            sa.select(sa.func.count()).where(
                sa.or_(
                    applications.c.reference == typed,
                    applications.c.provisional_reference == typed,
                )
            )
        )
        if not taken:
            connection.execute(
                applications.update()
                .where(applications.c.id == application_id)
                .values(reference=typed)
            )


def downgrade() -> None:
    """Nothing to undo: the normalised reference is the one STATUS always looked up."""
