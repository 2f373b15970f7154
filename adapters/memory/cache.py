"""An in-process TTL cache, bounded in size, for one server process."""

from __future__ import annotations

from cachetools import TTLCache

from domain.assignment import Assignment
from domain.experiment import Experiment


class MemoryCache:
    """Keys ``experiment:{experiment_id}`` and ``assignment:{experiment_id}:{user_id}``.

    cachetools' TTLCache evicts least-recently-used entries past ``max_entries``, so memory stays
    bounded however many users arrive.
    """

    def __init__(self, ttl_seconds: float = 3600, max_entries: int = 1_000_000) -> None:
        self._entries: TTLCache[str, object] = TTLCache(maxsize=max_entries, ttl=ttl_seconds)

    async def get_experiment(self, experiment_id: str) -> Experiment | None:
        return self._entries.get(f"experiment:{experiment_id}")  # type: ignore[return-value]

    async def set_experiment(self, experiment: Experiment) -> None:
        self._entries[f"experiment:{experiment.id}"] = experiment

    async def get_assignment(self, experiment_id: str, user_id: str) -> Assignment | None:
        return self._entries.get(f"assignment:{experiment_id}:{user_id}")  # type: ignore[return-value]

    async def set_assignment(self, assignment: Assignment) -> None:
        self._entries[f"assignment:{assignment.experiment_id}:{assignment.user_id}"] = assignment

    async def close(self) -> None:
        self._entries.clear()
