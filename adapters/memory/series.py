"""The series' totals of the memory store, walked from its assignments and events one user at
a time: the reference the SQL stores' statements are held to by the contract suite."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from domain.assignment import Assignment
from domain.event import Event
from domain.results import counts
from domain.series import Period, SeriesCell, SeriesTotals, period_of


def series_totals(
    assignments: Mapping[str, Assignment], events: Iterable[Event], event_type: str, period: Period
) -> SeriesTotals:
    """``assignments``: the experiment's, by user."""
    users: dict[tuple[str, int], int] = defaultdict(int)
    for a in assignments.values():
        users[a.variant_id, period_of(a.assigned_at, period)] += 1
    per_user: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0.0]))
    for event in events:
        assignment = assignments.get(event.user_id)
        if event.event_type != event_type or assignment is None or not counts(event.timestamp, assignment.assigned_at):
            continue
        figures = per_user[event.user_id][period_of(event.timestamp, period)]
        figures[0] += 1
        figures[1] += event.value or 0.0
    cells: dict[tuple[str, int, int], SeriesCell] = defaultdict(SeriesCell)
    for user_id, by_period in per_user.items():
        assignment = assignments[user_id]
        start = period_of(assignment.assigned_at, period)
        before = 0.0
        for index, (p, (count, value)) in enumerate(sorted(by_period.items())):
            after = before + value
            cells[assignment.variant_id, start, p] += SeriesCell(
                int(index == 0), int(count), value, after * after - before * before
            )
            before = after
    return SeriesTotals(dict(users), dict(cells))
