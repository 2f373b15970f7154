"""The databases the SQL store runs on, one complete strategy module each (common.py says what a
strategy provides), and the registry that picks one by its dialect's name."""

from __future__ import annotations

from adapters.sqlalchemy.dialects.common import Dialect, UnsupportedDatabase
from adapters.sqlalchemy.dialects.postgresql import PostgresDialect
from adapters.sqlalchemy.dialects.sqlite import SqliteDialect

_DIALECTS: dict[str, Dialect] = {d.name: d for d in (SqliteDialect(), PostgresDialect())}

__all__ = ["Dialect", "UnsupportedDatabase", "dialect_named"]


def dialect_named(name: str) -> Dialect:
    """The strategy of dialect ``name`` (a URL's backend, an engine's dialect), or an error
    that names it: no database is ever run with another one's strategy."""
    try:
        return _DIALECTS[name]
    except KeyError:
        known = " or ".join(d.url_example for d in _DIALECTS.values())
        raise UnsupportedDatabase(f"DATABASE_URL database {name!r} is not supported; use {known}") from None
