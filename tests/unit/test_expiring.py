"""The expiring map that holds each process's experiments."""

from __future__ import annotations

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


def test_past_its_size_the_oldest_set_goes_first(now: list[float]) -> None:
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
