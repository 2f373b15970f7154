"""Deterministic stand-ins for the nondeterministic ports: a clock you move, ids you can read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
"""Where a FakeClock starts unless told otherwise."""


class FakeClock:
    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


class SequentialIds:
    def __init__(self, prefix: str = "id") -> None:
        self._prefix, self._next = prefix, 0

    def new_id(self) -> str:
        self._next += 1
        return f"{self._prefix}{self._next:06d}"


class FakeTimer:
    """A monotonic clock in seconds (what ``time.monotonic`` gives) that moves only when told."""

    def __init__(self, start: float = 1000.0) -> None:
        self.current = start

    def __call__(self) -> float:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += seconds
