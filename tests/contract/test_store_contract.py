"""One contract every Store adapter must keep; run against each (see STORE_KINDS in conftest)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from application.ports import Store
from application.unit_of_work import UnitOfWork
from domain.assignment import Assignment, HeldOut
from domain.audit import EXPERIMENT_CREATED, KEY_CREATED, KEY_REVOKED, AuditEntry
from domain.errors import ConcurrentChange, DuplicateExperimentName, DuplicateName
from domain.event import Event, EventBatch
from domain.experiment import Experiment, VariantDraft
from domain.keys import ApiKey
from domain.layers import Holdout, HoldoutRef, Layer, LayerSlot, Slice, SliceTaken
from domain.results import ResultQuery
from tests.conftest import STORE_KINDS, open_store, sqlite_url
from tests.every_field import HOLDOUT, LAYER, an_experiment_with_every_field, differences
from tests.factories import an_experiment
from tests.fakes import SequentialIds

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def experiment(name: str = "exp", shares: Sequence[float] = (50, 50), **fields: Any) -> Experiment:
    """With a description, so that each round trip carries one."""
    return an_experiment(name, shares, description="about it", **fields)


async def test_experiments_round_trip_exactly(store: Store) -> None:
    exp = experiment(shares=(33.33, 33.33, 33.34), created_at=T0 + timedelta(microseconds=123457))
    await store.add_experiment(exp)
    assert await store.get_experiment(exp.id) == exp
    assert await store.get_experiment("missing") is None


async def test_an_experiment_with_every_field_set_comes_back_whole(store: Store) -> None:
    experiment = an_experiment_with_every_field()
    await store.add_layer(LAYER)
    await store.add_holdout(HOLDOUT)
    await store.add_experiment(experiment)
    got = await store.get_experiment(experiment.id)
    assert got is not None and differences(got, experiment) == []
    (listed,), _ = await store.list_experiments(1, 0)
    assert differences(listed, experiment) == []


async def test_existing_experiment_ids_in_one_lookup(store: Store) -> None:
    made = [experiment(f"e{i}") for i in range(3)]
    for exp in made:
        await store.add_experiment(exp)
    # Thousands of names, most made up (with a NUL and a very long one): the known ones come back.
    asked = [f"made-up-{i}" for i in range(2500)] + [made[0].id, made[2].id, "nul\x00id", "x" * 5000]
    assert await store.existing_experiment_ids(asked) == {made[0].id, made[2].id}
    assert await store.existing_experiment_ids([]) == set()
    assert await store.existing_experiment_ids({made[1].id}) == {made[1].id}


async def test_a_change_round_trips_and_applies_only_to_the_version_it_was_made_from(store: Store) -> None:
    exp = Experiment.create(
        name="live", description="d", primary_event_type="buy", coverage=10,
        variants=[VariantDraft("a", 50), VariantDraft("b", 50)], new_id=SequentialIds("live").new_id, created_at=T0,
    )
    await store.add_experiment(exp)
    now = T0 + timedelta(hours=1, microseconds=7)
    ids = SequentialIds("new")
    changed, diff = exp.changed(now, ids.new_id, name="renamed", coverage=12.34, status="paused", description=None)
    assert set(diff) == {"name", "coverage_basis_points", "status", "description"}
    changed = changed.forced("qa-1", exp.variants[1].id, now).forced("qa-2", exp.variants[0].id, now)
    await store.update_experiment(changed, expected_version=exp.version)
    assert await store.get_experiment(exp.id) == changed
    with pytest.raises(ConcurrentChange):  # a second change made from the same old version
        await store.update_experiment(exp.changed(now, ids.new_id, name="late")[0], expected_version=exp.version)
    await store.add_experiment(experiment("taken", ids="t"))
    with pytest.raises(DuplicateExperimentName):
        await store.update_experiment(changed.changed(now, ids.new_id, name="taken")[0], expected_version=changed.version)
    assert (await store.get_experiment(exp.id)).name == "renamed"


async def test_a_draft_keeps_its_audience_and_may_change_its_split(store: Store) -> None:
    rule = {"any": [{"attribute": "plan", "op": "eq", "value": "pro"}, {"attribute": "age", "op": "gte", "value": 18}]}
    ids = SequentialIds("d")
    draft = Experiment.create(
        name="draft", description=None, primary_event_type=None, status="draft", coverage=0.01, audience=rule,
        variants=[VariantDraft("a", 50), VariantDraft("b", 50)], new_id=ids.new_id, created_at=T0,
    )
    await store.add_experiment(draft)
    assert await store.get_experiment(draft.id) == draft
    resplit, _ = draft.changed(T0, ids.new_id, variants=[VariantDraft("x", 10), VariantDraft("y", 90, True)])
    await store.update_experiment(resplit, expected_version=draft.version)
    assert await store.get_experiment(draft.id) == resplit


async def test_layers_refuse_overlapping_slices_and_free_archived_ones(store: Store) -> None:
    layer = Layer("L1", "checkout", "seed-1", T0)
    await store.add_layer(layer)
    with pytest.raises(DuplicateName):
        await store.add_layer(Layer("L2", "checkout", "seed-2", T0))
    assert await store.get_layer("L1") == layer and await store.list_layers() == [layer]
    ids = SequentialIds("lx")
    base = Experiment.create(name="a", description=None, primary_event_type=None,
                             variants=[VariantDraft("a", 50), VariantDraft("b", 50)], new_id=ids.new_id, created_at=T0)
    first = replace(base, layer=LayerSlot("L1", "seed-1", Slice(0, 3000)))
    await store.add_experiment(first)
    assert await store.get_experiment(first.id) == first
    clash = replace(experiment("clash"), layer=LayerSlot("L1", "seed-1", Slice(2999, 5000)))
    with pytest.raises(SliceTaken):
        await store.add_experiment(clash)
    assert await store.get_experiment(clash.id) is None
    assert await store.layer_slices("L1") == [(first.id, Slice(0, 3000))]
    stopped, _ = first.changed(T0, ids.new_id, status="stopped")
    archived, _ = stopped.changed(T0, ids.new_id, status="archived")
    await store.update_experiment(stopped, expected_version=first.version)
    await store.update_experiment(archived, expected_version=stopped.version)
    assert await store.layer_slices("L1") == []
    await store.add_experiment(clash)


async def test_holdout_outcomes_count_from_first_sight_or_first_assignment(store: Store) -> None:
    holdout = Holdout("H", "global", "seed", 500, T0)
    await store.add_holdout(holdout)
    assert await store.get_holdout("H") == holdout and await store.list_holdouts() == [holdout]
    opted = replace(experiment("opted", ids="hx"), holdout=HoldoutRef("H", "seed", 500))
    other = experiment("other", ids="o")
    for exp in (opted, other):
        await store.add_experiment(exp)
    assert await store.get_experiment(opted.id) == opted
    t = lambda minutes: T0 + timedelta(minutes=minutes)  # noqa: E731
    await store.add_holdout_member("H", "held-1", t(10))
    await store.add_holdout_member("H", "held-1", t(50))  # the first sight stays
    await store.add_holdout_member("H", "held-2", t(10))
    await store.add_assignment(Assignment(opted.id, "exp-1", opted.variants[0].id, "v0", t(10)))
    await store.add_assignment(Assignment(opted.id, "exp-2", opted.variants[1].id, "v1", t(10)))
    await store.add_assignment(Assignment(other.id, "exp-3", other.variants[1].id, "v1", t(10)))
    await store.add_events(EventBatch.of([
        Event(opted.id, "held-1", "buy", t(20)),  # counts
        Event(opted.id, "held-2", "buy", t(5)),  # before first sight
        Event(opted.id, "exp-1", "buy", t(10)),  # at the assignment: counts
        Event(opted.id, "exp-1", "buy", t(11)),  # same user again
        Event(other.id, "exp-2", "buy", t(30)),  # not an experiment of the holdout
        Event(opted.id, "exp-2", "view", t(30)),  # another type
    ]))
    assert await store.holdout_outcomes("H", "buy") == (2, 1, 2, 1)


async def test_names_are_unique(store: Store) -> None:
    await store.add_experiment(experiment("a"))
    with pytest.raises(DuplicateExperimentName):
        await store.add_experiment(experiment("a", ids="other"))


async def test_listing_is_newest_first_and_paged(store: Store) -> None:
    made = [experiment(f"e{i}", created_at=T0 + timedelta(seconds=i)) for i in range(5)]
    for exp in made:
        await store.add_experiment(exp)
    items, total = await store.list_experiments(2, 1)
    assert total == 5
    assert [e.name for e in items] == ["e3", "e2"]
    assert (await store.list_experiments(10, 10)) == ([], 5)


async def test_first_assignment_wins_and_is_returned_to_every_caller(store: Store) -> None:
    exp = experiment()
    await store.add_experiment(exp)
    assert await store.get_assignment(exp.id, "u1") is None
    tries = [Assignment.decide(exp, "u1", T0 + timedelta(seconds=i)) for i in range(20)]
    stored = await asyncio.gather(*(store.add_assignment(a) for a in tries))
    assert len(set(stored)) == 1
    assert stored[0] in tries
    assert await store.get_assignment(exp.id, "u1") == stored[0]


async def test_exposures_store_assignments_and_holdout_members_keeping_what_was_first(store: Store) -> None:
    holdout = Holdout("H", "global", "seed", 500, T0)
    await store.add_holdout(holdout)
    exp = replace(experiment("exposed", ids="ex"), holdout=HoldoutRef("H", "seed", 500))
    await store.add_experiment(exp)
    t = lambda minutes: T0 + timedelta(minutes=minutes)  # noqa: E731
    earlier = await store.add_assignment(Assignment.decide(exp, "known", t(1)))
    decided = [Assignment.decide(exp, user, t(5)) for user in ("known", "new-1", "new-2")]
    stored = await store.add_exposures(decided, [HeldOut("H", "held", t(5))])
    assert stored == [earlier, decided[1], decided[2]]  # the first assignment stays
    assert await store.get_assignment(exp.id, "new-2") == decided[2]
    await store.add_exposures([], [HeldOut("H", "held", t(9))])  # the first sight stays too
    await store.add_events(EventBatch.of([Event(exp.id, "held", "buy", t(6))]))
    assert await store.holdout_outcomes("H", "buy") == (1, 1, 3, 0)
    users = await store.variant_aggregates(exp, ResultQuery())
    assert sum(v.users for v in users.values()) == 3


async def test_events_skip_known_event_ids_within_and_across_batches(store: Store) -> None:
    exp = experiment()
    await store.add_experiment(exp)
    e = Event(exp.id, "u1", "buy", T0, 1.5, '{"a":1}', "id-1")
    assert await store.add_events(EventBatch.of([e, e, Event(exp.id, "u1", "buy", T0)])) == 2
    assert await store.add_events(EventBatch.of([e, Event(exp.id, "u1", "buy", T0, event_id="id-2")])) == 1
    assert await store.add_events(EventBatch.of([Event(exp.id, "u1", "buy", T0), Event(exp.id, "u1", "buy", T0)])) == 2


async def test_the_counting_rule_is_exact_to_the_microsecond(store: Store) -> None:
    exp = experiment()
    await store.add_experiment(exp)
    at = T0 + timedelta(hours=1, microseconds=500)
    assignment = await store.add_assignment(Assignment.decide(exp, "u1", at))
    await store.add_events(
        EventBatch.of([
            Event(exp.id, "u1", "buy", at - timedelta(microseconds=1), 100.0),
            Event(exp.id, "u1", "buy", at, 2.0),
            Event(exp.id, "u1", "buy", at + timedelta(microseconds=1), 3.0),
        ])
    )
    agg = (await store.variant_aggregates(exp, ResultQuery(primary_event_type="buy")))[assignment.variant_id]
    assert (agg.users, agg.events, agg.primary.events, agg.primary.value_sum, agg.primary.value_sum_squares) == (
        1, 2, 2, 5.0, 25.0,
    )


async def test_aggregates_equal_an_independent_computation(store: Store) -> None:
    """A seeded random stream of assignments and events, and every kind of filter."""
    rng = random.Random(7)
    exp = experiment(shares=(40, 35, 25))
    await store.add_experiment(exp)
    assignments: dict[str, Assignment] = {}
    for i in range(60):
        user = f"u{i}"
        at = T0 + timedelta(days=rng.randrange(5), seconds=rng.randrange(86_400), microseconds=rng.randrange(10**6))
        if i < 50:  # the rest stay unassigned: their events are stored but never counted
            assignments[user] = await store.add_assignment(Assignment.decide(exp, user, at))
    events = []
    for _ in range(600):
        user = f"u{rng.randrange(60)}"
        when = T0 + timedelta(days=rng.randrange(6), seconds=rng.randrange(86_400))
        if user in assignments and rng.random() < 0.2:
            when = assignments[user].assigned_at  # events at exactly the assignment count
        value = rng.choice([None, round(rng.uniform(0, 50), 2)])
        events.append(Event(exp.id, user, rng.choice(["buy", "view", "click"]), when, value))
    await store.add_events(EventBatch.of(events))

    day = timedelta(days=1)
    queries = [
        ResultQuery(primary_event_type="buy"),
        ResultQuery(primary_event_type=None),
        ResultQuery(event_type="view", primary_event_type="buy"),
        ResultQuery(start=T0 + day, end=T0 + 3 * day - timedelta(microseconds=1), primary_event_type="click"),
        ResultQuery(end=T0 + 2 * day, event_type="buy", primary_event_type="buy"),
        ResultQuery(start=T0 + 4 * day),
    ]
    for query in queries:
        got = await store.variant_aggregates(exp, query)
        expected = reference(exp, assignments, events, query)
        for v in exp.variants:
            agg = got[v.id]
            want = expected[v.id]
            assert (agg.users, agg.events, agg.unique_users_with_events, dict(agg.event_counts),
                    agg.primary.events, agg.primary.users) == want[:6], query
            assert agg.primary.value_sum == pytest.approx(want[6], rel=1e-12)
            assert agg.primary.value_sum_squares == pytest.approx(want[7], rel=1e-12)


def reference(exp, assignments, events, q: ResultQuery) -> dict[str, tuple]:
    """The counting rule of API.md, written out plainly over raw events."""
    out = {}
    for v in exp.variants:
        members = {u: a for u, a in assignments.items() if a.variant_id == v.id}
        users = sum(1 for a in members.values() if q.end is None or a.assigned_at <= q.end)
        counted = [
            e for e in events
            if e.user_id in members and e.timestamp >= members[e.user_id].assigned_at
            and (q.start is None or e.timestamp >= q.start) and (q.end is None or e.timestamp <= q.end)
        ]
        shown = [e for e in counted if q.event_type in (None, e.event_type)]
        primary = [e for e in counted if q.primary_event_type in (None, e.event_type)]
        counts: dict[str, int] = defaultdict(int)
        for e in shown:
            counts[e.event_type] += 1
        totals: dict[str, float] = defaultdict(float)
        for e in primary:
            totals[e.user_id] += e.value or 0.0
        out[v.id] = (
            users, len(shown), len({e.user_id for e in shown}), dict(counts), len(primary),
            len(totals), sum(totals.values()), sum(t * t for t in totals.values()),
        )
    return out


async def test_ping(store: Store) -> None:
    assert await store.ping() is True


class Reopenable:
    """A store of one kind, and the means to open it again on the same data, as a restart does
    (the memory store is its own reopening: nothing of it outlives the object)."""

    def __init__(self, kind: str, tmp_path: Path, postgres_url: str | None) -> None:
        self.kind, self._tmp_path, self._postgres_url = kind, tmp_path, postgres_url
        self._open: list[Store] = []

    async def open(self) -> Store:
        store = await open_store(self.kind, self._tmp_path, self._postgres_url)
        self._open.append(store)
        await store.start()  # as a server runs it: its background work too
        return store

    async def reopen(self, store: Store) -> Store:
        if self.kind == "memory":
            return store
        from adapters.sqlalchemy.engine import create_engine_for
        from adapters.sqlalchemy.store import SqlStore

        url = sqlite_url(self._tmp_path) if self.kind == "sqlite" else self._postgres_url
        assert url is not None
        again = SqlStore(create_engine_for(url))
        self._open.append(again)
        await again.start()
        return again

    async def close(self, store: Store) -> None:
        self._open.remove(store)
        await store.close()

    async def close_all(self) -> None:
        while self._open:
            await self._open.pop().close()


@pytest.fixture(
    params=[
        pytest.param(kind, marks=pytest.mark.postgres if kind == "postgres" else ())
        for kind in STORE_KINDS
    ]
)
async def reopenable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Reopenable]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    stores = Reopenable(request.param, tmp_path, url)
    yield stores
    await stores.close_all()


def assert_aggregates(got, expected) -> None:
    for variant_id, want in expected.items():
        agg = got[variant_id]
        assert (agg.users, agg.events, agg.unique_users_with_events, dict(agg.event_counts),
                agg.primary.events, agg.primary.users, agg.primary.value_sum,
                agg.primary.value_sum_squares) == want


def a_batch(exp: Experiment, tag: str, size: int, users: int = 12) -> list[Event]:
    """Events of users u0 to u11, after the assignments assigned() makes (of u0 to u9; the
    rest of their events are stored, not counted). Values are multiples of 1/4, so every sum
    of them is exact in any order."""
    return [
        Event(exp.id, f"u{i % users}", ("buy", "view", "click")[i % 3],
              T0 + timedelta(hours=1 + i % 40, microseconds=i), (i % 9) / 4 or None,
              None, f"{tag}-{i}")
        for i in range(size)
    ]


async def assigned(store: Store, exp: Experiment, users: int = 10) -> dict[str, Assignment]:
    made = [Assignment.decide(exp, f"u{i}", T0 + timedelta(minutes=i)) for i in range(users)]
    return {a.user_id: await store.add_assignment(a) for a in made}


async def test_writes_in_flight_when_the_store_closes_complete_and_last(
    reopenable: Reopenable,
) -> None:
    store = await reopenable.open()
    exp = experiment()
    await store.add_experiment(exp)
    assignments = await assigned(store, exp)
    batches = [a_batch(exp, f"b{n}", 150) for n in range(6)]
    # u10 and u11 are assigned while their events are in flight too.
    late = [Assignment.decide(exp, f"u{i}", T0 + timedelta(minutes=30)) for i in (10, 11)]
    writes = [asyncio.create_task(store.add_events(EventBatch.of(b))) for b in batches]
    writes += [asyncio.create_task(store.add_assignment(a)) for a in late]
    await asyncio.sleep(0)  # every write has started, and waits on the store

    closing = asyncio.gather(*writes, reopenable.close(store), return_exceptions=True)
    *outcomes, _ = await asyncio.wait_for(closing, timeout=30)
    assert outcomes == [150] * len(batches) + late

    again = await reopenable.reopen(store)
    for assignment in [*assignments.values(), *late]:
        assert await again.get_assignment(exp.id, assignment.user_id) == assignment
    assignments |= {a.user_id: a for a in late}
    events = [e for b in batches for e in b]
    for query in (ResultQuery(primary_event_type="buy"),
                  ResultQuery(start=T0, end=T0 + timedelta(days=1, microseconds=-1)),
                  ResultQuery(start=T0 + timedelta(hours=3), end=T0 + timedelta(hours=30))):
        assert_aggregates(await again.variant_aggregates(exp, query),
                          reference(exp, assignments, events, query))
    assert await again.add_events(EventBatch.of(events)) == 0  # every one stored already


BREAKS = {
    # Beyond a 64-bit integer: every store rejects it. The memory store when it makes the
    # event's datetime; SQLite when sqlite3 binds that row, midway through the insert of the
    # batch; PostgreSQL when asyncpg encodes the column, before the statement runs.
    "timestamp-beyond-int64": ("timestamps", 2**63),
    # NULL in a NOT NULL column: the database itself rejects the row, midway through the
    # insert, on SQLite and PostgreSQL. (A string longer than its column errs on no store
    # today: SQLite does not enforce VARCHAR lengths, and PostgreSQL truncates a value cast to
    # varchar(n), as the store's array insert does.) The memory store has no columns to break.
    "null-event-type": ("event_types", None),
}


@pytest.mark.parametrize("breaks", list(BREAKS))
async def test_a_batch_that_fails_midway_stores_nothing_and_fails_alone(
    store: Store, breaks: str, request: pytest.FixtureRequest
) -> None:
    if breaks == "null-event-type" and request.node.callspec.params["store"] == "memory":
        pytest.skip("the memory store stores any value: no column rejects one")
    exp = experiment()
    await store.add_experiment(exp)
    assignments = await assigned(store, exp)
    before = a_batch(exp, "before", 80)
    assert await store.add_events(EventBatch.of(before)) == 80
    query = ResultQuery(primary_event_type="buy")
    counted_before = await store.variant_aggregates(exp, query)

    doomed = a_batch(exp, "doomed", 120)
    broken = EventBatch.of(doomed)
    column, bad_value = BREAKS[breaks]
    getattr(broken, column)[90] = bad_value  # 90 good events before it, 29 after
    # Each store fails in its own words (OverflowError, IntegrityError, StoreUnavailable):
    # what matters is that it fails, and keeps nothing.
    with pytest.raises(Exception):  # noqa: B017
        await store.add_events(broken)
    assert await store.variant_aggregates(exp, query) == counted_before

    # Beside other batches, at once: those are stored, the broken one is not.
    neighbours = [a_batch(exp, "left", 60), a_batch(exp, "right", 70)]
    outcomes = await asyncio.gather(
        store.add_events(EventBatch.of(neighbours[0])),
        store.add_events(broken),
        store.add_events(EventBatch.of(neighbours[1])),
        return_exceptions=True,
    )
    assert outcomes[0] == 60 and outcomes[2] == 70, outcomes
    assert isinstance(outcomes[1], Exception)
    stored = before + neighbours[0] + neighbours[1]
    assert_aggregates(await store.variant_aggregates(exp, query),
                      reference(exp, assignments, stored, query))

    # None of the broken batch's good events was kept: sent again without the bad one, every
    # one is new.
    rest = [e for i, e in enumerate(doomed) if i != 90]
    assert await store.add_events(EventBatch.of(rest)) == len(rest)
    assert_aggregates(await store.variant_aggregates(exp, query),
                      reference(exp, assignments, stored + rest, query))


# ---- API keys and the audit trail


def api_key(i: int, *, at: datetime = T0, expires_at: datetime | None = None) -> ApiKey:
    return ApiKey.create(
        name=f"key-{i}",
        scopes=["read", "assign"],
        expires_at=expires_at,
        secret=f"xpk_secret-{i}",
        created_by="jwt:alice",
        new_id=lambda: f"k{i:05d}",
        now=at,
    )


def entry(i: int, action: str, target_id: str, at: datetime = T0, **details: object) -> AuditEntry:
    return AuditEntry(f"a{i:05d}", at, "API_TOKENS", action, "key", target_id, details)


T = TypeVar("T")


async def audited(audit: AuditEntry, write: Awaitable[T]) -> T:
    """``write`` in a unit of work with ``audit`` recorded: the store stores them together."""
    async with UnitOfWork() as work:
        work.audit(audit)
        return await write


async def test_keys_round_trip_and_are_found_by_digest(store: Store) -> None:
    key = api_key(1, at=T0 + timedelta(microseconds=7), expires_at=T0 + timedelta(days=1, microseconds=3))
    await audited(entry(1, KEY_CREATED, key.id), store.add_key(key))
    assert await store.get_key(key.id) == key
    assert await store.find_key(key.digest) == key
    assert await store.get_key("missing") is None
    assert await store.get_key("nul\x00") is None
    assert await store.find_key("0" * 64) is None


async def test_keys_are_listed_newest_first_and_paged(store: Store) -> None:
    for i in range(5):
        k = api_key(i, at=T0 + timedelta(seconds=i))
        await audited(entry(i, KEY_CREATED, k.id), store.add_key(k))
    items, total = await store.list_keys(2, 1)
    assert total == 5
    assert [k.name for k in items] == ["key-3", "key-2"]
    assert (await store.list_keys(10, 10)) == ([], 5)


async def test_revoking_stores_the_time_and_one_entry_and_is_idempotent(store: Store) -> None:
    key = api_key(1)
    await audited(entry(1, KEY_CREATED, key.id), store.add_key(key))
    first = await audited(entry(2, KEY_REVOKED, key.id, T0 + timedelta(hours=1)), store.revoke_key(key.id, T0 + timedelta(hours=1)))
    assert first == key.revoked(T0 + timedelta(hours=1))
    again = await audited(entry(3, KEY_REVOKED, key.id, T0 + timedelta(hours=2)), store.revoke_key(key.id, T0 + timedelta(hours=2)))
    assert again == first
    assert await store.find_key(key.digest) == first
    assert await audited(entry(4, KEY_REVOKED, "missing"), store.revoke_key("missing", T0)) is None
    entries, total = await store.list_audit(10, 0)
    assert total == 2
    assert [e.id for e in entries] == ["a00002", "a00001"]


async def test_an_experiment_is_stored_with_its_audit_entry_or_neither_is(store: Store) -> None:
    exp = experiment("a")
    created = AuditEntry("a1", T0, "ci", EXPERIMENT_CREATED, "experiment", exp.id, {"name": "a", "n": [1, 2.5]})
    await audited(created, store.add_experiment(exp))
    with pytest.raises(DuplicateExperimentName):
        taken = experiment("a", ids="other")
        await audited(AuditEntry("a2", T0, "ci", EXPERIMENT_CREATED, "experiment", taken.id), store.add_experiment(taken))
    assert (await store.list_audit(10, 0)) == ([created], 1)
    # Outside a unit of work a write stores no entry.
    await store.add_experiment(experiment("b"))
    assert (await store.list_audit(10, 0))[1] == 1


async def test_audit_entries_are_newest_first_filtered_and_paged(store: Store) -> None:
    keys = [api_key(i) for i in range(3)]
    for i, k in enumerate(keys):
        await audited(entry(i, KEY_CREATED, k.id, T0 + timedelta(seconds=i), name=k.name, scopes=list(k.scopes)), store.add_key(k))
    await audited(entry(9, KEY_REVOKED, keys[0].id, T0 + timedelta(seconds=9)), store.revoke_key(keys[0].id, T0 + timedelta(seconds=9)))
    everything, total = await store.list_audit(10, 0)
    assert total == 4 and [e.id for e in everything] == ["a00009", "a00002", "a00001", "a00000"]
    assert everything[3].details == {"name": "key-0", "scopes": ["assign", "read"]}
    assert everything[3].at == T0 and everything[3].actor == "API_TOKENS" and everything[3].target_type == "key"
    created, total = await store.list_audit(1, 1, action=KEY_CREATED)
    assert total == 3 and [e.id for e in created] == ["a00001"]
    about_first, total = await store.list_audit(10, 0, target_id=keys[0].id)
    assert total == 2 and [e.action for e in about_first] == [KEY_REVOKED, KEY_CREATED]
    assert (await store.list_audit(10, 0, action=KEY_REVOKED, target_id=keys[1].id)) == ([], 0)
    assert (await store.list_audit(10, 0, target_id="nul\x00")) == ([], 0)


RATIOS = [{"name": "p", "kind": "conversion", "event_type": "buy", "role": "primary"}] + [
    {"name": f"{a}/{b}", "kind": "ratio", "event_type": a, "denominator_event_type": b}
    for a, b in (("buy", "view"), ("buy", "buy"), ("visit", "buy"))
]


@pytest.mark.parametrize("declared", ["at creation", "after the first fold", "never"])
async def test_metric_totals_equal_an_independent_computation(store: Store, declared: str) -> None:
    """The totals of the metrics' event types and the ratios' per-user cross sums, folded in
    part (the SQL stores read folded totals plus the tail), over every kind of range. Ratios
    declared at creation are kept by every fold; declared later, the next fold sums what came
    before; a pair never declared is summed from the users' totals at each read."""
    rng = random.Random(11)
    exp = experiment(shares=(50, 50), analysis={"metrics": RATIOS} if declared == "at creation" else None)
    await store.add_experiment(exp)
    assignments: dict[str, Assignment] = {}
    events: list[Event] = []

    async def wave(first: int, count: int) -> None:
        batch = []
        for i in range(first, first + count):
            user = f"u{i}"
            at = T0 + timedelta(days=rng.randrange(3), seconds=rng.randrange(86_400))
            assignments[user] = await store.add_assignment(Assignment.decide(exp, user, at))
        for _ in range(count * 8):
            user = f"u{rng.randrange(first + count + 5)}"  # a few never assigned
            when = T0 + timedelta(days=rng.randrange(5), seconds=rng.randrange(86_400))
            value = rng.choice([None, round(rng.uniform(-5, 50), 2)])
            batch.append(Event(exp.id, user, rng.choice(["buy", "view", "visit"]), when, value))
        events.extend(batch)
        await store.add_events(EventBatch.of(batch))

    await wave(0, 30)
    if hasattr(store, "fold"):
        await store.fold()  # the first wave folded, the second in the tail
    if declared == "after the first fold":
        changed, _ = exp.changed(T0, SequentialIds("v2").new_id, analysis={"metrics": RATIOS})
        await store.update_experiment(changed, expected_version=exp.version)
        exp = changed
    await wave(30, 15)
    if hasattr(store, "fold"):
        await store.fold()  # a pair declared after the first fold is filled by this one
    await wave(45, 15)
    day = timedelta(days=1)
    types, pairs = ("buy", "view", "visit"), (("buy", "view"), ("buy", "buy"), ("visit", "buy"))
    # Capped metrics' types (domain/capping.py) come with every user's figures.
    queries = [
        ResultQuery(primary_event_type="buy", metric_types=types, pairs=pairs, capped_types=("buy", "view")),
        ResultQuery(event_type="view", primary_event_type="buy", metric_types=("buy", "visit"), pairs=pairs[2:],
                    capped_types=("visit",)),
        ResultQuery(start=T0 + day + timedelta(hours=5, microseconds=3), end=T0 + 3 * day - timedelta(minutes=7),
                    metric_types=types, pairs=pairs, capped_types=types),
        ResultQuery(start=T0 + 2 * day, event_type="buy", primary_event_type="buy", metric_types=types, pairs=pairs,
                    capped_types=("buy",)),
    ]
    for query in queries:
        got = await store.variant_aggregates(exp, query)
        for v in exp.variants:
            per_user: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
            for e in events:
                a = assignments.get(e.user_id)
                if a is None or a.variant_id != v.id or e.timestamp < a.assigned_at:
                    continue
                if (query.start and e.timestamp < query.start) or (query.end and e.timestamp > query.end):
                    continue
                per_user[e.user_id, e.event_type][0] += 1
                per_user[e.user_id, e.event_type][1] += e.value or 0.0
            agg = got[v.id]
            assert set(agg.by_type) == set(query.metric_types)
            for t in query.metric_types:
                mine = [x for (_, tt), x in per_user.items() if tt == t]
                totals = agg.by_type[t]
                assert (totals.events, totals.users, totals.events_sum_squares) == (
                    sum(n for n, _ in mine), len(mine), sum(n * n for n, _ in mine)), (query, t)
                assert totals.value_sum == pytest.approx(sum(s for _, s in mine), rel=1e-9, abs=1e-9)
                assert totals.value_sum_squares == pytest.approx(sum(s * s for _, s in mine), rel=1e-9)
            assert set(agg.per_user) == set(query.capped_types)
            for t in query.capped_types:
                want = sorted((n, s) for (_, tt), (n, s) in per_user.items() if tt == t)
                figures = sorted(agg.per_user[t])
                assert [n for n, _ in figures] == [n for n, _ in want], (query, t)
                assert [s for _, s in figures] == pytest.approx([s for _, s in want], rel=1e-9, abs=1e-9)
            for a_type, b_type in query.pairs:
                users = {u for (u, t) in per_user if t == a_type} & {u for (u, t) in per_user if t == b_type}
                cross = agg.cross.get((a_type, b_type))
                want_n = sum(per_user[u, a_type][0] * per_user[u, b_type][0] for u in users)
                want_v = sum(per_user[u, a_type][1] * per_user[u, b_type][0] for u in users)
                got_n = 0 if cross is None else cross.events_products
                got_v = 0.0 if cross is None else cross.value_products
                assert got_n == want_n, (query, a_type, b_type)
                assert got_v == pytest.approx(want_v, rel=1e-9, abs=1e-9), (query, a_type, b_type)
    # Folded and rebuilt from raw rows, the last query's figures stay (sums of floats to rounding).
    if hasattr(store, "fold"):
        await store.fold()
    await store.rebuild_aggregates()
    again = await store.variant_aggregates(exp, queries[-1])
    for v in exp.variants:
        for t, totals in got[v.id].by_type.items():
            rebuilt = again[v.id].by_type[t]
            assert (rebuilt.events, rebuilt.users, rebuilt.events_sum_squares) == (
                totals.events, totals.users, totals.events_sum_squares)
            assert rebuilt.value_sum_squares == pytest.approx(totals.value_sum_squares, rel=1e-12)
        for pair, cross in got[v.id].cross.items():
            assert again[v.id].cross[pair].events_products == cross.events_products
            assert again[v.id].cross[pair].value_products == pytest.approx(cross.value_products, rel=1e-12)


@pytest.mark.parametrize("turned_on", ["at creation", "after the first folds"])
async def test_covariate_totals_equal_an_independent_computation(store: Store, turned_on: str) -> None:
    """CUPED's sums (domain/totals.CovariateTotals): each user's pre-period total of the primary
    type (events in the 14 days before the assignment, that moment excluded) against their
    counted total, with events sent before and after the assignment (late ones too), folded in
    part, at the window's edges to the microsecond, without and with date ranges. Turned on
    later, the next fold fills what came before."""
    rng = random.Random(5)
    exp = experiment(shares=(50, 50), analysis={"cuped": True} if turned_on == "at creation" else None)
    await store.add_experiment(exp)
    assignments: dict[str, Assignment] = {}
    events: list[Event] = []
    day = timedelta(days=1)
    start = T0 + 20 * day  # assignments from here on; events from 20 days earlier

    async def send(batch: list[Event]) -> None:
        events.extend(batch)
        await store.add_events(EventBatch.of(batch))

    def some_events(users: Sequence[str], count: int, earliest: datetime, days: int) -> list[Event]:
        return [
            Event(exp.id, rng.choice(users), rng.choice(["buy", "view"]),
                  earliest + timedelta(days=rng.randrange(days), seconds=rng.randrange(86_400)),
                  rng.choice([None, round(rng.uniform(-5, 50), 2)]))
            for _ in range(count)
        ]

    async def assign(users: Sequence[str], at: datetime) -> None:
        for user in users:
            assignments[user] = await store.add_assignment(Assignment.decide(exp, user, at))

    first, second, third = [f"u{i}" for i in range(20)], [f"v{i}" for i in range(20)], [f"w{i}" for i in range(10)]
    # Before any assignment: events of the first and second waves' users (some older than 14 days).
    await send(some_events(first + second + ["never"], 200, T0, 20))
    if hasattr(store, "fold"):
        await store.fold()  # these are kept as prior events, their users not yet assigned
    await assign(first, start)
    # At the window's edges, to the microsecond: in, in, out; and at the assignment (counted, not pre).
    edge = first[0]
    await send([
        Event(exp.id, edge, "buy", start - 14 * day, 1.0),
        Event(exp.id, edge, "buy", start - timedelta(microseconds=1), 2.0),
        Event(exp.id, edge, "buy", start - 14 * day - timedelta(microseconds=1), 4.0),
        Event(exp.id, edge, "buy", start, 8.0),
    ])
    await send(some_events(first, 100, start - 3 * day, 6))  # late pre-period events and counted ones
    if hasattr(store, "fold"):
        await store.fold()
    await assign(second, start + day)  # their earlier events were folded as prior events
    await send(some_events(first + second + third, 150, start - 10 * day, 14))
    if turned_on != "at creation":
        changed, _ = exp.changed(T0, SequentialIds("v2").new_id, analysis={"cuped": True})
        await store.update_experiment(changed, expected_version=exp.version)
        exp = changed
        if hasattr(store, "fold"):
            await store.fold()  # fills what was folded, and folds the rest
    await assign(third, start + 2 * day)  # in the tail, with their earlier events in the tail too
    queries = [
        ResultQuery(primary_event_type="buy", covariates=True),
        ResultQuery(covariates=True),  # every type
        ResultQuery(start=start + day, end=start + 2 * day + timedelta(hours=3), primary_event_type="buy", covariates=True),
        ResultQuery(start=start - 2 * day, primary_event_type="view", covariates=True),
        ResultQuery(end=start + day, covariates=True),
    ]

    def expected(query: ResultQuery, variant_id: str) -> tuple[int, float, float, int, float]:
        users, sx, sxx, both, sxy = 0, 0.0, 0.0, 0, 0.0
        for user, a in assignments.items():
            if a.variant_id != variant_id or (query.end is not None and a.assigned_at > query.end):
                continue
            mine = [e for e in events if e.user_id == user and query.primary_event_type in (None, e.event_type)]
            pre = [e for e in mine if a.assigned_at - 14 * day <= e.timestamp < a.assigned_at]
            post = [e for e in mine if e.timestamp >= a.assigned_at
                    and (query.start is None or e.timestamp >= query.start)
                    and (query.end is None or e.timestamp <= query.end)]
            if not pre:
                continue
            x = sum(e.value or 0.0 for e in pre)
            y = sum(e.value or 0.0 for e in post)
            users, sx, sxx, both, sxy = users + 1, sx + x, sxx + x * x, both + bool(post), sxy + x * y
        return users, sx, sxx, both, sxy

    async def check() -> None:
        for query in queries:
            got = await store.variant_aggregates(exp, query)
            plain = await store.variant_aggregates(exp, replace(query, covariates=False))
            for v in exp.variants:
                cov = got[v.id].covariate
                assert cov is not None and plain[v.id].covariate is None
                users, sx, sxx, both, sxy = expected(query, v.id)
                assert (cov.users, cov.both) == (users, both), (query, v.name)
                assert (cov.value_sum, cov.value_sum_squares, cov.value_products) == pytest.approx(
                    (sx, sxx, sxy), rel=1e-9, abs=1e-9), (query, v.name)
                # Nothing else changes (PostgreSQL may add a float sum's terms in another order).
                assert replace(got[v.id], covariate=None, primary=plain[v.id].primary) == plain[v.id]
                assert got[v.id].primary.value_sum == pytest.approx(plain[v.id].primary.value_sum, rel=1e-12)
        assert any(expected(queries[0], v.id)[0] for v in exp.variants)  # the test has data to check

    await check()
    if hasattr(store, "fold"):
        await store.fold()
        await check()
    await store.rebuild_aggregates()
    await check()
