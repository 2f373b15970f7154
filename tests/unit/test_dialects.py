"""The registry of database dialects: every registered one is a complete strategy, and a
database without one is refused at start, by name, without its credentials."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.dialects import Dialect, UnsupportedDatabase, dialect_named
from adapters.sqlalchemy.engine import create_engine_for, parse_url
from adapters.sqlalchemy.migrate import upgrade
from entrypoints.config.container import build_store
from entrypoints.config.settings import Settings

UNKNOWN = [
    ("mysql://app:s3cret-pw@db.example/shop", "mysql"),
    ("mysql+pymysql://app:s3cret-pw@db.example/shop", "mysql"),
    ("oracle://app:s3cret-pw@db.example:1521/shop", "oracle"),
    ("postgres://app:s3cret-pw@db.example/shop", "postgres"),  # libpq's alias; SQLAlchemy's is not
]


@pytest.mark.parametrize("name", ["sqlite", "postgresql"])
def test_each_database_has_a_complete_strategy_of_its_own_name(name: str) -> None:
    dialect = dialect_named(name)
    assert isinstance(dialect, Dialect)
    assert dialect.name == name


def assert_refused_by_name(caught: pytest.ExceptionInfo[UnsupportedDatabase], name: str) -> None:
    message = str(caught.value)
    assert f"'{name}'" in message and "not supported" in message
    assert "sqlite:///" in message and "postgresql://" in message  # what to use instead
    assert "s3cret-pw" not in message and "app" not in message and "\n" not in message


@pytest.mark.parametrize(("url", "name"), UNKNOWN)
def test_an_unknown_database_url_is_refused_before_any_engine(url: str, name: str) -> None:
    for refuse in (
        lambda: create_engine_for(url),
        lambda: parse_url(url, asynchronous=False),
        lambda: upgrade(url),
    ):
        with pytest.raises(UnsupportedDatabase) as caught:
            refuse()
        assert_refused_by_name(caught, name)


@pytest.mark.parametrize(("url", "name"), UNKNOWN[:1])
def test_the_composition_root_refuses_an_unknown_database(url: str, name: str) -> None:
    with pytest.raises(UnsupportedDatabase) as caught:
        build_store(Settings.from_env({"DATABASE_URL": url}))
    assert_refused_by_name(caught, name)


def test_an_engine_of_an_unknown_dialect_never_runs_on_another_ones_strategy() -> None:
    engine: Any = SimpleNamespace(dialect=SimpleNamespace(name="mysql"))
    with pytest.raises(UnsupportedDatabase) as caught:
        Database(engine)
    assert "'mysql'" in str(caught.value)


def test_each_url_gets_the_drivers_this_project_ships() -> None:
    assert parse_url("sqlite:///x.db", asynchronous=True).drivername == "sqlite+aiosqlite"
    assert parse_url("sqlite:///x.db", asynchronous=False).drivername == "sqlite+pysqlite"
    served = parse_url("postgresql://u@h/db", asynchronous=True)
    migrated = parse_url("postgresql+psycopg2://u@h/db", asynchronous=False)
    assert (served.drivername, migrated.drivername) == ("postgresql+asyncpg", "postgresql+psycopg")
    assert served.query["connect_timeout"] == migrated.query["connect_timeout"] == "5"


def test_a_fold_script_on_postgresql_writes_integers_in_and_nothing_else() -> None:
    """A fold goes to PostgreSQL as one simple query with its parameters written into the text:
    each placeholder gets its own value (``$1`` is not the start of ``$11``), and a value that
    is not an integer is refused before any text is made."""
    from sqlalchemy import text

    from adapters.sqlalchemy.dialects.postgresql import OneRoundTrip

    names = [f"p{n}" for n in range(12)]
    script = OneRoundTrip([text("SELECT " + ", ".join(f":{n}" for n in names) + ", 'a:b', 1::bigint"), text("SELECT :p1")])
    values = {n: 1000 + i for i, n in enumerate(names)}
    lines = script.text(values).split(";\n")
    assert lines[1:] == [
        "SELECT " + ", ".join(str(1000 + i) for i in range(12)) + ", 'a:b', 1::bigint",
        "SELECT 1001",
    ]
    for bad in ("1; DROP TABLE events", 1.5, True, None):
        with pytest.raises(TypeError):
            script.text({**values, "p3": bad})
