"""The real clock and id source: UTC, unique, and in creation order."""

from __future__ import annotations

from datetime import UTC

from adapters.system import SystemClock, TimeOrderedIds


def test_clock_is_aware_utc() -> None:
    assert SystemClock().now().tzinfo is UTC


def test_ids_are_unique_opaque_hex_and_sorted_by_creation() -> None:
    ids = TimeOrderedIds()
    made = [ids.new_id() for _ in range(10_000)]  # far more than fit in one millisecond
    assert len(set(made)) == len(made)
    assert made == sorted(made)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    assert made[0][12] == "7"  # the UUIDv7 version nibble
