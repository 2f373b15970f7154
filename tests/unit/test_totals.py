"""Summable totals, and the cut of a time range into days, hours and raw edges."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from adapters.sqlalchemy.views import OPEN_END, OPEN_START, periods
from domain.totals import EventTotals

HOUR, DAY = 3_600_000_000, 86_400_000_000


def totals_of(values_by_user: dict[str, list[float]]) -> EventTotals:
    """Straight from the definition: per-user sums, then their sum and sum of squares."""
    sums = [sum(v) for v in values_by_user.values() if v]
    return EventTotals(
        sum(len(v) for v in values_by_user.values()), len(sums), sum(sums), sum(s * s for s in sums)
    )


events = st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(-50, 50).map(float)), max_size=40)


@given(events, events)
def test_totals_of_disjoint_users_add_up(left, right) -> None:  # type: ignore[no-untyped-def]
    a, b = defaultdict(list), defaultdict(list)
    for user, value in left:
        a["L" + user].append(value)
    for user, value in right:
        b["R" + user].append(value)
    assert totals_of(a) + totals_of(b) == totals_of({**a, **b})


@given(events, events)
def test_an_increment_against_the_totals_before_it_adds_up(before, after) -> None:  # type: ignore[no-untyped-def]
    """What a fold adds: users new to the totals, and (v + d)² − v² per user."""
    old, new = defaultdict(list), defaultdict(list)
    for user, value in before:
        old[user].append(value)
    for user, value in after:
        new[user].append(value)
    increment = EventTotals(
        sum(len(v) for v in new.values()),
        sum(1 for u in new if not old.get(u)),
        sum(sum(v) for v in new.values()),
        sum((sum(old.get(u, [])) + sum(v)) ** 2 - sum(old.get(u, [])) ** 2 for u, v in new.items()),
    )
    both = defaultdict(list, {u: list(v) for u, v in old.items()})
    for u, v in new.items():
        both[u].extend(v)
    assert totals_of(old) + increment == totals_of(both)


bounds = st.integers(-400 * DAY, 400 * DAY)


@given(st.one_of(st.just(OPEN_START), bounds), st.one_of(st.just(OPEN_END), bounds))
def test_a_range_is_cut_into_days_hours_and_edges_exactly_once(start: int, end: int) -> None:
    cut = periods(start, end)
    pieces = [(d1 * DAY, d2 * DAY) for d1, d2 in ([cut.days] if cut.days else [])]
    pieces += [(h1 * HOUR, h2 * HOUR) for h1, h2 in cut.hours]
    pieces += list(cut.raw)
    pieces.sort()
    if start >= end:
        assert pieces == []
        return
    assert pieces[0][0] == start and pieces[-1][1] == end
    assert all(a < b for a, b in pieces)
    assert all(p[1] == q[0] for p, q in zip(pieces, pieces[1:]))  # contiguous, no overlap
    # Raw events are read only within the partial hours at the two ends.
    assert sum(b - a for a, b in cut.raw) < 2 * HOUR and len(cut.raw) <= 2
    assert len(cut.hours) <= 2 and all(b - a < 48 for a, b in cut.hours if cut.days)
