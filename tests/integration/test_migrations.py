"""The Alembic history and the schema the code uses are one and the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from adapters.sqlalchemy.migrate import upgrade
from adapters.sqlalchemy.tables import metadata


# Indexes on PostgreSQL alone (``ddl_if``): SQLite folds by rowid and needs none.
_ON_SQLITE = {"include_object": lambda obj, name, kind, reflected, other: not (
    kind == "index" and not reflected and getattr(getattr(obj, "_ddl_if", None), "dialect", None) == "postgresql"
)}


def test_upgrade_builds_exactly_the_tables_the_code_uses(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    upgrade(url)  # a second run at head changes nothing
    engine = create_engine(url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts=_ON_SQLITE), metadata) == []
        indexed = {tuple(i["column_names"]) for i in inspect(conn).get_indexes("events")}
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    engine.dispose()
    # One secondary index on events (event_id's uniqueness is a constraint): each one more
    # would slow every insert.
    assert indexed == {("experiment_id", "timestamp")}
    assert mode == "wal"


@pytest.mark.postgres
def test_upgrade_builds_exactly_the_tables_the_code_uses_on_postgresql(postgres_database: str) -> None:
    upgrade(postgres_database)
    upgrade(postgres_database)
    engine = create_engine(postgres_database.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        indexed = {tuple(i["column_names"]) for i in inspect(conn).get_indexes("events")}
    engine.dispose()
    # event_id's uniqueness is an index on PostgreSQL.
    assert indexed == {("experiment_id", "timestamp"), ("txid",), ("event_id",)}
