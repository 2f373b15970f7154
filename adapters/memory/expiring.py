"""A small map whose entries expire: the experiments each process keeps, read on every request."""

from __future__ import annotations

from time import monotonic
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class ExpiringMap(Generic[K, V]):
    """Entries live ``ttl_seconds`` from when they were set; past ``max_entries`` the oldest set
    goes first.

    Every assignment request reads its experiment here, hit or miss of the assignment, so a read
    is one dict lookup and one clock read: cachetools' TTLCache took several times as long (its
    timer is a context manager, its order a linked list) and would have cost the cache-hit route
    a few percent. An expired entry is dropped when read, or pushed out by newer ones.
    """

    def __init__(self, max_entries: int, ttl_seconds: float) -> None:
        self._entries: dict[K, tuple[float, V]] = {}
        self._max, self._ttl = max_entries, ttl_seconds

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def set(self, key: K, value: V) -> None:
        entries = self._entries
        entries.pop(key, None)  # re-set: its place is now the newest
        while len(entries) >= self._max:
            del entries[next(iter(entries))]  # dicts keep insertion order: the oldest first
        entries[key] = (monotonic() + self._ttl, value)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
