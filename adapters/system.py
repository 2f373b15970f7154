"""The real clock and id source; tests inject fixed ones instead."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class TimeOrderedIds:
    """UUIDv7-shaped ids (RFC 9562): 48 bits of milliseconds, then randomness, as 32 hex digits.

    Time order keeps "newest first" listings stable for ids made in the same microsecond, and
    keeps index inserts at the right edge of the B-tree.
    """

    def __init__(self) -> None:
        self._last_ms = 0
        self._sequence = 0

    def new_id(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms <= self._last_ms:
            # Same millisecond (or clock stepped back): count up so ids stay strictly ordered.
            self._sequence += 1
            if self._sequence > 0xFFF:
                self._last_ms += 1
                self._sequence = 0
            ms = self._last_ms
        else:
            self._sequence = 0
            self._last_ms = ms
        rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
        value = (ms << 80) | (0x7 << 76) | ((self._sequence & 0xFFF) << 64) | (0b10 << 62) | rand
        return f"{value:032x}"
