"""The one poller of the tests: wait for a condition, never for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def eventually(probe: Callable[[], Any], within: float, what: str = "the condition", interval: float = 0.05) -> Any:
    """``probe()``'s first truthy value; fails, naming ``what`` and the last value, if none
    comes within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        if value := probe():
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {within} s (last: {value!r})")
        time.sleep(interval)


async def eventually_async(
    probe: Callable[[], Any], within: float, what: str = "the condition", interval: float = 0.01
) -> Any:
    """The same in an event loop; ``probe`` may be sync or async."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {within} s (last: {value!r})")
        await asyncio.sleep(interval)
