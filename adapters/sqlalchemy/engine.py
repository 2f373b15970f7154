"""Engines from DATABASE_URL: the async one the store runs on, the sync one migrations run on,
each made by the strategy of the URL's database (dialects/)."""

from __future__ import annotations

from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sqlalchemy.dialects import Dialect, UnsupportedDatabase, dialect_named

__all__ = ["UnsupportedDatabase", "create_engine_for", "migration_engine_for", "parse_url"]


def _dialect_of(url: str, *, asynchronous: bool) -> tuple[Dialect, URL]:
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError with the URL in it
        raise UnsupportedDatabase("DATABASE_URL is not a valid database URL") from exc
    dialect = dialect_named(parsed.get_backend_name())
    return dialect, dialect.url(parsed, asynchronous=asynchronous)


def parse_url(url: str, *, asynchronous: bool) -> URL:
    """DATABASE_URL with the driver this project ships for its database; UnsupportedDatabase,
    naming only the URL's database and never its credentials, if there is none."""
    return _dialect_of(url, asynchronous=asynchronous)[1]


def create_engine_for(url: str) -> AsyncEngine:
    dialect, parsed = _dialect_of(url, asynchronous=True)
    return dialect.engine(parsed)


def migration_engine_for(url: str) -> tuple[Dialect, Engine]:
    dialect, parsed = _dialect_of(url, asynchronous=False)
    return dialect, dialect.migration_engine(parsed)
