"""Alembic migrations and the SQLAlchemy models describe the same schema, on the run's
database (SQLite or PostgreSQL), and the migrations go back down to nothing."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.db.models import Base
from support.db import database_url, sync_engine
from support.stack import alembic_config, migrate


def test_migrations_match_the_models_and_go_back_to_base(tmp_path: Path) -> None:
    url = database_url(tmp_path, "schema", empty=True)
    migrate(url)
    engine = sync_engine(tmp_path, "schema")
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []

    command.downgrade(alembic_config(url), "base")
    engine.dispose()
    with engine.connect() as connection:
        assert set(sa.inspect(connection).get_table_names()) <= {"alembic_version"}
        assert MigrationContext.configure(connection).get_current_revision() is None
