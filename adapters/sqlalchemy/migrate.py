"""Apply the Alembic history to DATABASE_URL: `make run` does this before it serves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config

from adapters.sqlalchemy.engine import migration_engine_for

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    _migrate(database_url, command.upgrade, revision)


def downgrade(database_url: str, revision: str) -> None:
    """Back to ``revision``, dropping what the later ones added (0005 cannot be undone: its
    downgrade says to restore a backup taken before it)."""
    _migrate(database_url, command.downgrade, revision)


def _migrate(database_url: str, step: Callable[[Config, str], None], revision: str) -> None:
    dialect, engine = migration_engine_for(database_url)
    try:
        with engine.begin() as connection:
            dialect.lock_migrations(connection)  # held until this transaction ends
            config = alembic_config()
            config.attributes["connection"] = connection
            step(config, revision)
            dialect.check_migrated(connection)
    finally:
        engine.dispose()
