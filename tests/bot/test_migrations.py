"""Alembic migrations and the SQLAlchemy models describe the same schema."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.db.models import Base
from support.stack import migrate


def test_migrations_match_the_models(tmp_path: Path) -> None:
    database = tmp_path / "schema.db"
    migrate(f"sqlite+aiosqlite:///{database}")
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []
