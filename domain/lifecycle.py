"""An experiment's lifecycle: draft, running, paused, stopped, archived, and the moves between."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from domain.errors import DomainError


class Status(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    ARCHIVED = "archived"


MOVES: Mapping[Status, frozenset[Status]] = {
    Status.DRAFT: frozenset({Status.RUNNING, Status.ARCHIVED}),
    Status.RUNNING: frozenset({Status.PAUSED, Status.STOPPED}),
    Status.PAUSED: frozenset({Status.RUNNING, Status.STOPPED}),
    Status.STOPPED: frozenset({Status.ARCHIVED}),
    Status.ARCHIVED: frozenset(),
}


class IllegalMove(DomainError):
    """A status change the lifecycle does not allow; names the current state."""

    def __init__(self, current: Status, target: Status) -> None:
        self.current, self.target = current, target
        allowed = ", ".join(sorted(MOVES[current])) or "none: it is final"
        super().__init__(
            f"the experiment is {current.value}; it cannot move to {target.value} "
            f"(from {current.value}: {allowed})"
        )


def move(current: Status, target: Status) -> Status:
    """``target`` if the lifecycle allows the move from ``current``, else IllegalMove. Asking
    for the current state is no move and always allowed (a retried request is harmless)."""
    if target != current and target not in MOVES[current]:
        raise IllegalMove(current, target)
    return target
