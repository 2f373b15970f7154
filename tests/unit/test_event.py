"""The rules of an event alone, the timestamp columns, and stamping a batch when received."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import FieldError
from domain.event import (
    MAX_MICROS,
    MIN_MICROS,
    OUT_OF_RANGE,
    NewEvents,
    batch_size_error,
    event_errors,
    micros_of,
    to_micros,
)

T = datetime(2026, 11, 28, 12, tzinfo=UTC)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_value_must_be_finite(value: float) -> None:
    assert event_errors(user_id="u", event_type="t", value=value) == [
        FieldError("value", "must be a finite number")
    ]


def test_a_good_event_breaks_no_rule() -> None:
    assert event_errors(
        user_id="u", event_type="t", timestamp=T, value=-0.0, properties="{}", event_id="k"
    ) == []


def test_the_timestamp_range_is_in_utc() -> None:
    first = datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert to_micros(first) == MIN_MICROS
    assert event_errors(user_id="u", event_type="t", timestamp=first) == []
    too_early = datetime(1, 1, 1, tzinfo=timezone(timedelta(minutes=1)))
    assert event_errors(user_id="u", event_type="t", timestamp=too_early) == [
        FieldError("timestamp", OUT_OF_RANGE)
    ]
    too_late = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone(-timedelta(minutes=1)))
    assert to_micros(too_late) == MAX_MICROS + 60_000_000
    assert event_errors(user_id="u", event_type="t", timestamp=too_late) == [
        FieldError("timestamp", OUT_OF_RANGE)
    ]


@given(
    st.lists(
        st.none()
        | st.datetimes(timezones=st.none() | st.just(UTC) | st.integers(-1439, 1439).map(
            lambda m: timezone(timedelta(minutes=m))
        )),
        max_size=5,
    )
)
def test_micros_of_a_column_is_to_micros_of_each(moments: list[datetime | None]) -> None:
    assert micros_of(moments) == [None if m is None else to_micros(m) for m in moments]


def test_stamping_fills_only_the_timestamps_left_out() -> None:
    events = NewEvents(["x", "x"], ["u", "v"], ["t", "t"], [None, 5], [None, 1.0], [None, "{}"], [None, "k"])
    stamped = events.stamped(T)
    assert stamped.timestamps == [to_micros(T), 5]
    assert events.timestamps == [None, 5]  # the received events are left as they came
    timed = NewEvents(["x"], ["u"], ["t"], [7], [None], [None], [None])
    assert timed.stamped(T).timestamps == [7]


@pytest.mark.parametrize("count,error", [(0, True), (1, False), (10_000, False), (10_001, True)])
def test_a_batch_holds_1_to_10000_events(count: int, error: bool) -> None:
    assert (batch_size_error(count) is not None) == error
