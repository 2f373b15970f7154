"""Results over time from the series' totals, each point against a count written here over the
raw events up to that point (and scipy/statsmodels for its tests), on random data: the
totals are exact at every period, calendar and since exposure, late events included."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from adapters.memory.series import series_totals
from domain.assignment import Assignment
from domain.errors import ValidationFailed
from domain.event import Event
from domain.series import MAX_POINTS, Period, calendar_series, exposure_series, period_of, start_of
from tests.factories import an_experiment

T0 = datetime(2026, 11, 28, tzinfo=UTC)
EXPERIMENT = an_experiment("series", (50, 50))
CONTROL, TREATED = EXPERIMENT.variants


def world(draw_users: list[tuple[int, int, list[tuple[int, int, int]]]]) -> tuple[dict[str, Assignment], list[Event]]:
    """Users (variant, minutes after T0 assigned, events (minutes after T0, type 0/1, value))."""
    assignments, events = {}, []
    for i, (arm, assigned, own) in enumerate(draw_users):
        variant = (CONTROL, TREATED)[arm]
        user = f"u{i}"
        at = T0 + timedelta(minutes=assigned)
        assignments[user] = Assignment(EXPERIMENT.id, user, variant.id, variant.name, at)
        for minute, kind, value in own:
            events.append(Event(EXPERIMENT.id, user, ("buy", "view")[kind], T0 + timedelta(minutes=minute), float(value)))
    return assignments, events


def raw_point(assignments: dict[str, Assignment], events: list[Event], variant_id: str, until: datetime,
              keep=lambda a: True) -> tuple[int, int, np.ndarray]:
    """Users assigned before ``until`` (and kept), converters and per-user value totals of
    their counted "buy" events before ``until``."""
    users = {u: a for u, a in assignments.items() if a.variant_id == variant_id and a.assigned_at < until and keep(a)}
    totals = dict.fromkeys(users, 0.0)
    bought = set()
    for e in events:
        a = users.get(e.user_id)
        if a is None or e.event_type != "buy" or e.timestamp < a.assigned_at or e.timestamp >= until:
            continue
        bought.add(e.user_id)
        totals[e.user_id] += e.value or 0.0
    return len(users), len(bought), np.array(list(totals.values()), dtype=float)


minutes = st.integers(0, 4 * 24 * 60)
users_strategy = st.lists(
    st.tuples(st.integers(0, 1), minutes, st.lists(st.tuples(minutes, st.integers(0, 1), st.integers(0, 50)), max_size=6)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(users_strategy, st.sampled_from(list(Period)))
def test_every_calendar_point_is_the_raw_count_up_to_its_end(drawn, period: Period) -> None:
    assignments, events = world(drawn)
    totals = series_totals(assignments, events, "buy", period)
    last = period_of(T0 + timedelta(days=4, minutes=1), period)
    points = calendar_series(EXPERIMENT, totals, last)
    assert points[-1].index == last
    for point in points:
        until = start_of(point.index + 1, period)
        for arm in point.arms:
            users, converters, values = raw_point(assignments, events, arm.variant_id, until)
            assert (arm.users, arm.converters) == (users, converters)
            assert arm.value_sum == pytest.approx(values.sum(), abs=1e-9)
        (comparison,) = point.comparisons
        _, _, control_values = raw_point(assignments, events, CONTROL.id, until)
        _, _, treated_values = raw_point(assignments, events, TREATED.id, until)
        if len(control_values) >= 2 and len(treated_values) >= 2 and (control_values.var() > 0 or treated_values.var() > 0):
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                try:
                    t = stats.ttest_ind(treated_values, control_values, equal_var=False)
                except RuntimeWarning:  # scipy says its own figure is unreliable here: no reference
                    continue
            assert comparison.value.p_value == pytest.approx(t.pvalue, rel=1e-6, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(users_strategy)
def test_hourly_totals_add_up_to_the_daily_ones(drawn) -> None:
    assignments, events = world(drawn)
    daily = series_totals(assignments, events, "buy", Period.DAY)
    from_hours = series_totals(assignments, events, "buy", Period.HOUR).by_day()
    assert from_hours.users == daily.users
    assert from_hours.cells.keys() == daily.cells.keys()
    for key, cell in daily.cells.items():
        mine = from_hours.cells[key]
        assert (mine.converters, mine.events) == (cell.converters, cell.events)
        assert mine.value_sum == pytest.approx(cell.value_sum, abs=1e-9)
        assert mine.value_squares == pytest.approx(cell.value_squares, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(users_strategy)
def test_every_point_since_exposure_is_the_raw_count_of_the_first_days(drawn) -> None:
    assignments, events = world(drawn)
    totals = series_totals(assignments, events, "buy", Period.DAY)
    last_day = period_of(T0 + timedelta(days=4, minutes=1), Period.DAY)
    for point in exposure_series(EXPERIMENT, totals, last_day):
        k = point.index
        for arm in point.arms:
            users = converters = 0
            value = 0.0
            for user, a in assignments.items():
                day = period_of(a.assigned_at, Period.DAY)
                if a.variant_id != arm.variant_id or day > last_day - k:
                    continue
                users += 1
                window_end = start_of(day + k + 1, Period.DAY)
                own = [e for e in events if e.user_id == user and e.event_type == "buy"
                       and a.assigned_at <= e.timestamp < window_end]
                converters += bool(own)
                value += sum(e.value or 0.0 for e in own)
            assert (arm.users, arm.converters) == (users, converters)
            assert arm.value_sum == pytest.approx(value, abs=1e-9)


def test_a_late_event_moves_the_users_first_conversion_back() -> None:
    assignments, events = world([(1, 0, [(3 * 24 * 60, 0, 5)])])
    late = Event(EXPERIMENT.id, "u0", "buy", T0 + timedelta(hours=2), 7.0)  # arrives last, happened first
    points = calendar_series(EXPERIMENT, series_totals(assignments, [*events, late], "buy", Period.DAY),
                             period_of(T0, Period.DAY) + 3)
    treated = [p.arms[1] for p in points]
    assert [a.converters for a in treated] == [1, 1, 1, 1]
    assert [a.new_converters for a in treated] == [1, 0, 0, 0]
    assert [a.value_sum for a in treated] == [7.0, 7.0, 7.0, 12.0]


def test_the_conversion_at_a_point_is_the_z_test_over_its_counts() -> None:
    drawn = [(i % 2, i, [(i + 5, 0, 1)] if i % 3 == 0 else []) for i in range(600)]
    assignments, events = world(drawn)
    last = period_of(T0, Period.DAY)
    (point,) = calendar_series(EXPERIMENT, series_totals(assignments, events, "buy", Period.DAY), last)
    control, treated = point.arms
    _, p = proportions_ztest([treated.converters, control.converters], [treated.users, control.users])
    assert point.comparisons[0].conversion.p_value == pytest.approx(p, rel=1e-9)
    assert point.comparisons[0].sequential.interval is not None


def test_no_assignment_no_points_and_a_series_too_long_is_refused() -> None:
    assert calendar_series(EXPERIMENT, series_totals({}, [], "buy", Period.DAY), 10) == []
    assignments, _ = world([(0, 0, [])])
    totals = series_totals(assignments, [], "buy", Period.HOUR)
    with pytest.raises(ValidationFailed):
        calendar_series(EXPERIMENT, totals, period_of(T0, Period.HOUR) + MAX_POINTS)
