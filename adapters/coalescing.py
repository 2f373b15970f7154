"""Calls of one kind that are many and small, coalesced: those that arrive while one is on its
way go together in the next, one round trip for all of them. The first runs at once (no timer:
a lone call waits for nobody); at most ``max_group`` go in one. A group that fails runs again
item by item, so that a bad item fails its own caller alone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")
R = TypeVar("R")


class Coalescer(Generic[I, R]):
    def __init__(self, run_group: Callable[[list[I]], Awaitable[Sequence[R]]], max_group: int) -> None:
        """``run_group``: the items' results, one an item, in their order."""
        self._run_group = run_group
        self._max_group = max_group
        self._waiting: list[tuple[I, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> R:
        """``item``'s result, once the group it went in has run."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run_waiting())
        return await future

    async def _run_waiting(self) -> None:
        while self._waiting:
            group = [(item, f) for item, f in self._waiting[: self._max_group] if not f.cancelled()]
            del self._waiting[: self._max_group]
            if not group:
                continue
            try:
                results = await self._run_group([item for item, _ in group])
            except Exception:  # noqa: BLE001 - a bad item, or the service: each alone, to fail alone
                await asyncio.gather(*(self._run_alone(item, f) for item, f in group))
                continue
            except BaseException:  # this runner cancelled (the loop ends): nobody waits forever
                for _, future in group:
                    future.cancel()
                raise
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _run_alone(self, item: I, future: asyncio.Future[R]) -> None:
        try:
            (result,) = await self._run_group([item])
        except Exception as exc:  # noqa: BLE001 - relayed to its own caller
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        """Let the calls already waiting run."""
        if self._runner is not None:
            await asyncio.shield(self._runner)
