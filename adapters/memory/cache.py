"""An in-process TTL cache, bounded in size, for one server process."""

from __future__ import annotations

from adapters.memory.expiring import ExpiringMap
from domain.assignment import Assignment
from domain.experiment import Experiment


class MemoryCache:
    """Experiments by id, assignments by (experiment id, user id), each process its own.

    Past ``max_entries`` the least recently used assignment goes first, so memory stays bounded
    however many users arrive. Assignments are kept ``ttl_seconds``. Experiments are kept
    only ``experiment_ttl_seconds``: with several worker processes each holds its own copy, and
    ``forget_experiment`` reaches only the process it is called in, so that TTL is how long the
    other processes may still answer with an experiment as it was before a change.
    """

    def __init__(
        self,
        ttl_seconds: float = 3600,
        max_entries: int = 1_000_000,
        *,
        experiment_ttl_seconds: float = 5,
        max_experiments: int = 10_000,
    ) -> None:
        self._assignments: ExpiringMap[tuple[str, str], Assignment] = ExpiringMap(max_entries, ttl_seconds)
        self._experiments: ExpiringMap[str, Experiment] = ExpiringMap(
            max_experiments, experiment_ttl_seconds
        )

    async def get_experiment(self, experiment_id: str) -> Experiment | None:
        return self._experiments.get(experiment_id)

    async def set_experiment(self, experiment: Experiment) -> None:
        self._experiments.set(experiment.id, experiment)

    async def get_assignment(self, experiment_id: str, user_id: str) -> Assignment | None:
        return self._assignments.get((experiment_id, user_id))

    async def set_assignment(self, assignment: Assignment) -> None:
        self._assignments.set((assignment.experiment_id, assignment.user_id), assignment)

    async def forget_experiment(self, experiment_id: str) -> None:
        self._experiments.pop(experiment_id)

    async def close(self) -> None:
        self._experiments.clear()
        self._assignments.clear()
