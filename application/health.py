"""Health: whether the store answers."""

from __future__ import annotations

from application.ports import (
    Lifecycle,
)


class CheckHealth:
    def __init__(self, store: Lifecycle) -> None:
        self._store = store

    async def __call__(self) -> bool:
        return await self._store.ping()
