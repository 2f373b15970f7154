"""The Alembic history and the schema the code uses are one and the same."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from adapters.sqlalchemy.engine import create_engine_for
from adapters.sqlalchemy.migrate import downgrade, upgrade
from adapters.sqlalchemy.store import SqlStore
from adapters.sqlalchemy.tables import metadata
from application.unit_of_work import UnitOfWork
from domain.assignment import Assignment
from domain.audit import AuditEntry
from domain.event import Event, EventBatch
from domain.experiment import Experiment
from domain.keys import ApiKey, digest_of
from domain.results import ResultQuery
from tests.contract.test_store_contract import reference
from tests.factories import an_experiment
from tests.integration.database import micros, raw_engine

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


# ---- Upgrading a database the landed code wrote ----------------------------------------------
# What the landed code (schema 0004) kept beside the raw rows: its totals, as its own rebuild
# computed them. The text below is adapters/sqlalchemy/aggregates.py's ``day_of`` and
# ``REBUILD_SQL`` as they were at revision 0004 (commit 1b7bff4), frozen here so that this
# fixture keeps meaning "a database as the landed code left it".

LANDED_MICROS_PER_DAY = 86_400_000_000


def landed_day_of(micros: str) -> str:
    """SQL for the UTC day (days since 1970-01-01) of a timestamp in microseconds: a floor
    division, where both databases' integer division truncates towards zero."""
    return (
        f"(CASE WHEN {micros} >= 0 THEN {micros} / {LANDED_MICROS_PER_DAY}"
        f" ELSE -((-{micros} - 1) / {LANDED_MICROS_PER_DAY}) - 1 END)"
    )


LANDED_REBUILD_SQL = (
    """
    INSERT INTO user_event_totals (experiment_id, user_id, event_type, events, value_sum)
    SELECT e.experiment_id, e.user_id, e.event_type, COUNT(*), SUM(COALESCE(e.value, 0.0))
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE e.timestamp + 0 >= a.assigned_at
    GROUP BY e.experiment_id, e.user_id, e.event_type
    """,
    """
    INSERT INTO user_event_totals (experiment_id, user_id, event_type, events, value_sum)
    SELECT e.experiment_id, e.user_id, '', COUNT(*), SUM(COALESCE(e.value, 0.0))
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE e.timestamp + 0 >= a.assigned_at
    GROUP BY e.experiment_id, e.user_id
    """,
    """
    INSERT INTO variant_event_totals
      (experiment_id, variant_id, event_type, events, users, value_sum, value_sum_squares)
    SELECT u.experiment_id, a.variant_id, u.event_type, SUM(u.events), COUNT(*),
           SUM(u.value_sum), SUM(u.value_sum * u.value_sum)
    FROM user_event_totals u JOIN user_assignments a
      ON a.experiment_id = u.experiment_id AND a.user_id = u.user_id
    GROUP BY u.experiment_id, a.variant_id, u.event_type
    """,
    f"""
    INSERT INTO user_day_totals (experiment_id, day, user_id, event_type, events, value_sum)
    SELECT e.experiment_id, {landed_day_of("e.timestamp")}, e.user_id, e.event_type, COUNT(*),
           SUM(COALESCE(e.value, 0.0))
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE e.timestamp + 0 >= a.assigned_at
    GROUP BY e.experiment_id, {landed_day_of("e.timestamp")}, e.user_id, e.event_type
    """,
)

DAY = timedelta(days=1)
MICRO = timedelta(microseconds=1)
T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1970 = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Landed:
    """One experiment's rows as written under schema 0004, and the queries to read it by."""

    experiment: Experiment
    assignments: dict[str, Assignment]
    events: list[Event]
    queries: list[ResultQuery]


def landed_data() -> list[Landed]:
    """Two experiments: one over four days of November 2026, one around 1970-01-01 (negative
    timestamps, days either side of day 0). Users assigned at any time, some never; events before
    and after their user's assignment, at it to the microsecond, of three types, with and without
    values and event_ids. Values are multiples of 1/4: every sum is exact in any order."""
    rng = random.Random(2004)
    out = []
    for name, start, shares, primary in (
        ("landed-2026", T0, (40, 35, 25), "buy"),
        ("landed-1970", T1970 - DAY, (50, 50), None),
    ):
        exp = an_experiment(
            name, shares, primary=primary, description="written by schema 0004", created_at=start
        )
        assignments = {}
        for i in range(24):
            at = start + timedelta(
                seconds=rng.randrange(3 * 86_400), microseconds=rng.randrange(10**6)
            )
            if i < 18:  # the rest never assigned: their events are stored, never counted
                assignments[f"u{i}"] = Assignment.decide(exp, f"u{i}", at)
        events = []
        for n in range(500):
            user = f"u{rng.randrange(24)}"
            when = start + timedelta(
                seconds=rng.randrange(4 * 86_400), microseconds=rng.randrange(10**6)
            )
            if user in assignments and rng.random() < 0.1:
                when = assignments[user].assigned_at
            events.append(
                Event(
                    exp.id,
                    user,
                    rng.choice(["buy", "view", "view", "click"]),
                    when,
                    rng.choice([None, rng.randrange(1, 800) / 4]),
                    rng.choice([None, '{"sku":"A-1"}']),
                    rng.choice([None, f"{name}-{n}"]),
                )
            )
        out.append(Landed(exp, assignments, events, []))
    late, early = out
    late.queries = [
        ResultQuery(primary_event_type="buy"),
        ResultQuery(primary_event_type=None),
        ResultQuery(event_type="view", primary_event_type="buy"),
        ResultQuery(start=T0 + DAY, end=T0 + 3 * DAY - MICRO, primary_event_type="buy"),
        ResultQuery(
            start=T0 + 2 * DAY,
            end=T0 + 3 * DAY - MICRO,
            event_type="click",
            primary_event_type="click",
        ),
        ResultQuery(end=T0 + 2 * DAY - MICRO, primary_event_type="view"),
        ResultQuery(
            start=T0 + DAY + timedelta(hours=5, minutes=30),
            end=T0 + 3 * DAY + timedelta(hours=17, minutes=45),
            primary_event_type="buy",
        ),
        ResultQuery(
            start=T0 + timedelta(hours=12),
            end=T0 + 2 * DAY + timedelta(hours=6),
            event_type="buy",
            primary_event_type=None,
        ),
    ]
    early.queries = [
        ResultQuery(primary_event_type=None),
        ResultQuery(event_type="buy", primary_event_type="view"),
        ResultQuery(start=T1970 - DAY, end=T1970 - MICRO, primary_event_type=None),
        ResultQuery(start=T1970 - DAY, end=T1970 + DAY - MICRO, primary_event_type="buy"),
        ResultQuery(
            start=T1970, end=T1970 + 2 * DAY - MICRO, event_type="view", primary_event_type=None
        ),
        ResultQuery(
            start=T1970 - timedelta(hours=4),
            end=T1970 + timedelta(hours=2, minutes=15),
            primary_event_type="click",
        ),
    ]
    return out


def write_as_schema_0004(url: str, data: list[Landed]) -> None:
    """The rows in raw SQL, as schema 0004 holds them; the totals as the landed code kept them."""
    engine = raw_engine(url)
    with engine.begin() as conn:
        for landed in data:
            exp = landed.experiment
            conn.execute(
                text(
                    "INSERT INTO experiments"
                    " (id, name, description, primary_event_type, created_at)"
                    " VALUES (:id, :name, :description, :primary, :created_at)"
                ),
                {
                    "id": exp.id,
                    "name": exp.name,
                    "description": exp.description,
                    "primary": exp.primary_event_type,
                    "created_at": micros(exp.created_at),
                },
            )
            conn.execute(
                text(
                    "INSERT INTO variants (id, experiment_id, position, name, traffic_basis_points,"
                    " is_control) VALUES (:id, :x, :position, :name, :points, :control)"
                ),
                [
                    {
                        "id": v.id,
                        "x": exp.id,
                        "position": i,
                        "name": v.name,
                        "points": v.traffic_basis_points,
                        "control": v.is_control,
                    }
                    for i, v in enumerate(exp.variants)
                ],
            )
            conn.execute(
                text(
                    "INSERT INTO user_assignments (experiment_id, user_id, variant_id, assigned_at)"
                    " VALUES (:x, :u, :v, :at)"
                ),
                [
                    {
                        "x": a.experiment_id,
                        "u": a.user_id,
                        "v": a.variant_id,
                        "at": micros(a.assigned_at),
                    }
                    for a in landed.assignments.values()
                ],
            )
            conn.execute(
                text(
                    "INSERT INTO events"
                    " (experiment_id, user_id, event_type, timestamp, value, properties, event_id)"
                    " VALUES (:x, :u, :t, :ts, :value, :properties, :event_id)"
                ),
                [
                    {
                        "x": e.experiment_id,
                        "u": e.user_id,
                        "t": e.event_type,
                        "ts": micros(e.timestamp),
                        "value": e.value,
                        "properties": e.properties,
                        "event_id": e.event_id,
                    }
                    for e in landed.events
                ],
            )
        for statement in LANDED_REBUILD_SQL:
            conn.execute(text(statement))
    engine.dispose()


def figures(aggregates) -> dict[str, tuple]:
    return {
        variant_id: (
            a.users,
            a.events,
            a.unique_users_with_events,
            dict(a.event_counts),
            a.primary.events,
            a.primary.users,
            a.primary.value_sum,
            a.primary.value_sum_squares,
        )
        for variant_id, a in aggregates.items()
    }


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_database_written_by_schema_0004_upgrades_with_its_results_intact(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        request.getfixturevalue("postgres_database")
        if kind == "postgres"
        else f"sqlite:///{tmp_path / 'landed.db'}"
    )
    data = landed_data()
    await asyncio.to_thread(upgrade, url, "0004")
    await asyncio.to_thread(write_as_schema_0004, url, data)
    await asyncio.to_thread(upgrade, url)

    store = SqlStore(create_engine_for(url))
    try:
        upgraded = {}
        for landed in data:
            assert await store.get_experiment(landed.experiment.id) == landed.experiment
            for query in landed.queries:
                upgraded[landed.experiment.id, query] = figures(
                    await store.variant_aggregates(landed.experiment, query)
                )
        await store.rebuild_aggregates()
        for landed in data:
            for query in landed.queries:
                rebuilt = figures(await store.variant_aggregates(landed.experiment, query))
                expected = reference(landed.experiment, landed.assignments, landed.events, query)
                assert upgraded[landed.experiment.id, query] == expected, (
                    landed.experiment.name,
                    query,
                )
                assert rebuilt == expected, (landed.experiment.name, query)
    finally:
        await store.close()


# ---- Down and up again ---------------------------------------------------------------------
REVISIONS = ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011", "0012"]
IRREVERSIBLE = {"0005"}  # it reshapes the totals; its downgrade says to restore a backup


def schema_of(url: str) -> dict[str, tuple]:
    """Every table's columns and indexes, as the database reports them."""
    engine = raw_engine(url)
    try:
        seen = inspect(engine)
        return {
            table: (
                sorted((c["name"], str(c["type"]), c["nullable"]) for c in seen.get_columns(table)),
                sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in seen.get_indexes(table)),
            )
            for table in seen.get_table_names()
        }
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_every_reversible_revision_goes_down_and_up_to_the_same_schema(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_database") if kind == "postgres" else f"sqlite:///{tmp_path / 'r.db'}"
    schemas: dict[str, dict[str, tuple]] = {}
    for before, revision in zip([None, *REVISIONS], REVISIONS):
        upgrade(url, revision)
        schemas[revision] = schema_of(url)
        if revision in IRREVERSIBLE:
            with pytest.raises(NotImplementedError):
                downgrade(url, before)
            assert schema_of(url) == schemas[revision]  # refused before it changed anything
            continue
        downgrade(url, before or "base")
        assert schema_of(url) == (schemas[before] if before else {"alembic_version": schemas[revision]["alembic_version"]}), revision
        upgrade(url, revision)
        assert schema_of(url) == schemas[revision], revision


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_data_written_at_head_survives_going_down_and_up_again(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Rows written by today's code, through the store, keep their results through a downgrade
    to 0006 (losing what 0007 added: the lifecycle, overrides, layers and holdouts) and to 0005
    (losing keys and the audit trail), each followed by an upgrade to head."""
    url = request.getfixturevalue("postgres_database") if kind == "postgres" else f"sqlite:///{tmp_path / 'h.db'}"
    await asyncio.to_thread(upgrade, url)
    data = landed_data()
    store = SqlStore(create_engine_for(url))
    try:
        for landed in data:
            await store.add_experiment(landed.experiment)
            for assignment in landed.assignments.values():
                await store.add_assignment(assignment)
            await store.add_events(EventBatch.of(landed.events))
        await store.fold()
        key = ApiKey("k1", "ci", ("read",), digest_of(b"secret").hex(), T0, "API_TOKENS")
        async with UnitOfWork() as work:
            work.audit(AuditEntry("a1", T0, "API_TOKENS", "key.created", "key", "k1", {"name": "ci"}))
            await store.add_key(key)
    finally:
        await store.close()

    async def results_are_intact(keys_too: bool) -> None:
        reopened = SqlStore(create_engine_for(url))
        try:
            for landed in data:
                assert await reopened.get_experiment(landed.experiment.id) == landed.experiment
                for query in landed.queries:
                    expected = reference(landed.experiment, landed.assignments, landed.events, query)
                    assert figures(await reopened.variant_aggregates(landed.experiment, query)) == expected, query
            assert (await reopened.get_key("k1") == key) is keys_too
            assert (await reopened.list_audit(10, 0))[1] == (1 if keys_too else 0)
        finally:
            await reopened.close()

    await results_are_intact(keys_too=True)
    for revision in ("0006", "0005"):
        await asyncio.to_thread(downgrade, url, revision)
        await asyncio.to_thread(upgrade, url)
        await results_are_intact(keys_too=revision == "0006")


@pytest.mark.postgres
def test_the_totals_the_folder_updates_keep_room_on_their_pages(postgres_database: str) -> None:
    """0008: on PostgreSQL the per-user and per-variant totals leave a fifth of each page free,
    so a fold's update of a row stays on its page and leaves the primary key's index alone;
    its downgrade gives the tables their default back."""

    def fill_factors() -> dict[str, list[str] | None]:
        engine = raw_engine(postgres_database)
        try:
            with engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:names) AND relkind = 'r'"
                ), {"names": ["user_event_totals", "user_day_totals", "user_hour_totals", "variant_event_totals",
                              "variant_users", "events"]}).all()
        finally:
            engine.dispose()
        return dict(rows)

    upgrade(postgres_database)
    found = fill_factors()
    assert found.pop("events") is None  # appended to, never updated: full pages
    assert found == dict.fromkeys(found, ["fillfactor=80"]) and len(found) == 5
    downgrade(postgres_database, "0007")
    assert set(fill_factors().values()) == {None}
