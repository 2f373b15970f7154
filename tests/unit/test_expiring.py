"""The expiring map that holds each process's experiments and assignments."""

from __future__ import annotations

import math

import pytest

from adapters.memory import expiring
from adapters.memory.expiring import ExpiringMap


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    clock = [100.0]
    monkeypatch.setattr(expiring, "monotonic", lambda: clock[0])
    return clock


def test_an_entry_lives_its_ttl_from_when_it_was_set(now: list[float]) -> None:
    entries: ExpiringMap[str, int] = ExpiringMap(10, 5)
    entries.set("a", 1)
    now[0] += 4.9
    assert entries.get("a") == 1
    entries.set("b", 2)
    now[0] += 0.1
    assert entries.get("a") is None and len(entries) == 1  # dropped when read expired
    assert entries.get("b") == 2
    entries.set("a", 3)  # set again: a new life
    now[0] += 4.9
    assert entries.get("a") == 3


def test_past_its_size_the_least_recently_used_goes_first(now: list[float]) -> None:
    entries: ExpiringMap[str, int] = ExpiringMap(2, 5)
    entries.set("a", 1)
    entries.set("b", 2)
    entries.set("a", 3)  # now the newest
    entries.set("c", 4)
    assert (entries.get("a"), entries.get("b"), entries.get("c")) == (3, None, 4)
    entries.pop("a")
    entries.pop("never set")
    assert entries.get("a") is None and len(entries) == 1
    entries.clear()
    assert len(entries) == 0


def test_a_read_makes_an_entry_the_most_recently_used(now: list[float]) -> None:
    entries: ExpiringMap[str, int] = ExpiringMap(2, 5)
    entries.set("a", 1)
    entries.set("b", 2)
    assert entries.get("a") == 1  # a is now newer than b
    entries.set("c", 3)
    assert (entries.get("a"), entries.get("b"), entries.get("c")) == (1, None, 3)


def test_without_a_ttl_entries_stay_until_pushed_out(now: list[float]) -> None:
    entries: ExpiringMap[str, int] = ExpiringMap(3, math.inf)
    entries.set("a", 1)
    now[0] += 1e9
    assert entries.get("a") == 1


def test_a_full_map_keeps_exactly_its_bound_under_churn(now: list[float]) -> None:
    entries: ExpiringMap[int, int] = ExpiringMap(100, 5)
    for i in range(10_000):
        entries.set(i, i)
        assert len(entries) == min(i + 1, 100)
    assert [entries.get(i) for i in (9_899, 9_900, 9_999)] == [None, 9_900, 9_999]
