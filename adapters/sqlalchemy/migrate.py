"""Apply the Alembic history to DATABASE_URL: `make run` does this before it serves."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

from adapters.sqlalchemy.engine import configure_sqlite, ensure_sqlite_directory, parse_url

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK_ID = 0x6578705F6D6967  # any constant the service's database does not use otherwise


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    url = parse_url(database_url, asynchronous=False)
    ensure_sqlite_directory(url)
    engine = create_engine(url)
    if url.get_backend_name() == "sqlite":
        configure_sqlite(engine)
    try:
        with engine.begin() as connection:
            if url.get_backend_name() == "postgresql":
                # Instances started together would all create the same tables; the lock makes
                # them take turns, and those after the first find the database at head. It is
                # released when this transaction ends.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
