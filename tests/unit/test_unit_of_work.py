"""The unit of work: an action and its audit entry together or neither, what follows only after."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from adapters.memory.cache import MemoryCache
from adapters.memory.store import MemoryStore
from application.experiments import ChangeExperiment, CreateExperiment
from application.unit_of_work import UnitOfWork, take_audit_entries
from domain.audit import AuditEntry
from domain.errors import ConcurrentChange, DuplicateExperimentName
from domain.experiment import VariantDraft
from tests.fakes import FakeClock, SequentialIds

T = datetime(2026, 11, 1, tzinfo=UTC)
DRAFTS = [VariantDraft("a", 50, True), VariantDraft("b", 50)]


def entry(i: int) -> AuditEntry:
    return AuditEntry(f"a{i}", T, "ci", "key.created", "key", f"k{i}")


async def test_what_follows_runs_after_the_unit_in_order_and_never_after_a_failure() -> None:
    ran: list[str] = []

    async def job(name: str) -> None:
        ran.append(name)

    async with UnitOfWork() as work:
        work.after_commit(lambda: job("first"))
        work.after_commit(lambda: job("second"))
        assert ran == []
    assert ran == ["first", "second"]
    with pytest.raises(ConcurrentChange):
        async with UnitOfWork() as work:
            work.after_commit(lambda: job("never"))
            raise ConcurrentChange("x")
    assert ran == ["first", "second"]


async def test_an_entry_that_no_write_stored_is_an_error_and_one_unit_at_a_time() -> None:
    with pytest.raises(RuntimeError, match="no write stored them"):
        async with UnitOfWork() as work:
            work.audit(entry(1))
    async with UnitOfWork():
        with pytest.raises(RuntimeError, match="already open"):
            async with UnitOfWork():
                pass
    assert take_audit_entries() == []  # outside a unit, a write takes nothing


async def test_concurrent_units_keep_their_own_entries() -> None:
    async def action(i: int) -> list[AuditEntry]:
        async with UnitOfWork() as work:
            work.audit(entry(i))
            await asyncio.sleep(0)  # the other action records its entry meanwhile
            return take_audit_entries()

    assert await asyncio.gather(action(1), action(2)) == [[entry(1)], [entry(2)]]


async def test_a_creation_refused_by_the_store_leaves_no_entry_and_nothing_cached() -> None:
    store, cache = MemoryStore(), MemoryCache()
    create = CreateExperiment(store, cache, FakeClock(), SequentialIds())
    first = await create(actor="ci", name="same", variants=DRAFTS)
    assert await cache.get_experiment(first.id) == first
    with pytest.raises(DuplicateExperimentName):
        await create(actor="ci", name="same", variants=DRAFTS)
    entries, total = await store.list_audit(10, 0)
    assert total == 1 and entries[0].target_id == first.id
    assert await cache.get_experiment("id000003") is None  # the refused one's id, never cached


class StaleReads:
    """The store, read as it was before another change landed: a race lost, made certain."""

    def __init__(self, store: MemoryStore, stale: object) -> None:
        self._store, self._stale = store, stale

    async def get_experiment(self, experiment_id: str) -> object:
        return self._stale

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


async def test_a_change_that_lost_a_race_leaves_no_entry_and_the_cache_as_it_was() -> None:
    store, cache, clock, ids = MemoryStore(), MemoryCache(), FakeClock(), SequentialIds()
    experiment = await CreateExperiment(store, cache, clock, ids)(actor="ci", name="x", variants=DRAFTS)
    await ChangeExperiment(store, cache, clock, ids)(experiment.id, "ci", name="y")  # the winner
    assert await cache.get_experiment(experiment.id) is None  # forgotten once committed
    await cache.set_experiment(experiment)
    loser = ChangeExperiment(StaleReads(store, experiment), cache, clock, ids)  # type: ignore[arg-type]
    with pytest.raises(ConcurrentChange):
        await loser(experiment.id, "ci", name="z")
    entries, _ = await store.list_audit(10, 0)
    assert [e.action for e in entries] == ["experiment.changed", "experiment.created"]
    assert await cache.get_experiment(experiment.id) == experiment  # not forgotten by the loser
