"""A bounded map whose entries expire: the experiments and assignments each process keeps."""

from __future__ import annotations

from collections import OrderedDict
from time import monotonic
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class ExpiringMap(Generic[K, V]):
    """Entries live ``ttl_seconds`` from when they were set (``math.inf``: until pushed out);
    past ``max_entries`` the least recently used goes first.

    Every assignment request reads its experiment here, and a cache hit its assignment, so a
    read is one lookup, one clock read and a move to the end of the order, all in C
    (``OrderedDict``): cachetools' TTLCache and LRUCache took several times as long (their
    timer is a context manager, their order a linked list of Python objects) and cost the
    cache-hit route several percent. Eviction is ``popitem(last=False)``, constant time even
    after many deletions (a plain dict's oldest key is found by a scan past deleted slots). An
    expired entry is dropped when read, or pushed out by newer ones.
    """

    def __init__(self, max_entries: int, ttl_seconds: float) -> None:
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._max, self._ttl = max_entries, ttl_seconds

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def set(self, key: K, value: V) -> None:
        entries = self._entries
        entries[key] = (monotonic() + self._ttl, value)
        entries.move_to_end(key)  # set again: its place is now the newest
        while len(entries) > self._max:
            entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
