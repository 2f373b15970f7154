"""The token bucket's arithmetic, and the settings that give each route class its rate."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from domain.rate_limit import Bucket, Decision, Rate, take
from entrypoints.config.settings import ConfigurationError, Settings

rates = st.builds(
    Rate,
    requests=st.integers(1, 100),
    per_seconds=st.sampled_from([1, 60]),
    burst=st.integers(1, 30),
)


def run(rate: Rate, times_ms: list[int], start: Bucket | None = None) -> list[bool]:
    """Whether each request at ``times_ms`` (milliseconds, non-decreasing) was allowed."""
    bucket, answers = start, []
    for ms in times_ms:
        bucket, allowed = take(bucket, rate, ms / 1000)
        answers.append(allowed)
    return answers


@given(rate=rates, gaps=st.lists(st.integers(0, 3000), max_size=120))
def test_never_more_than_the_burst_plus_the_refill_over_any_window(rate: Rate, gaps: list[int]) -> None:
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    allowed = [t for t, ok in zip(times, run(rate, times), strict=True) if ok]
    for i, first in enumerate(allowed):
        for j in range(i, len(allowed)):
            window = (allowed[j] - first) / 1000
            assert j - i + 1 <= rate.burst + rate.per_second * window + 1e-6


@given(rate=rates, extra=st.lists(st.integers(0, 5000), max_size=60))
@example(rate=Rate(10, 1, 1), extra=[0] * 30)  # 0.3 - 0.2 is 0.09999999999999998 s
def test_a_client_that_keeps_to_the_rate_is_never_refused(rate: Rate, extra: list[int]) -> None:
    # Starting from an empty bucket: the client spent its burst just before.
    interval = math.ceil(1000 / rate.per_second)
    times, now = [], 0
    for more in extra:
        now += interval + more
        times.append(now)
    assert all(run(rate, times, start=Bucket(0.0, 0.0)))


@given(rate=rates, spent=st.integers(0, 30), wait_ms=st.integers(0, 10_000))
def test_a_refused_request_is_allowed_after_retry_after(rate: Rate, spent: int, wait_ms: int) -> None:
    bucket = None
    for _ in range(min(spent, rate.burst)):
        bucket, _ = take(bucket, rate, 0.0)
    bucket, allowed = take(bucket, rate, wait_ms / 1000)
    decision = Decision.of(rate, bucket.tokens, allowed)
    if allowed:
        assert decision.retry_after_seconds == 0
        return
    assert decision.retry_after_seconds >= 1 and decision.remaining == 0
    later = wait_ms / 1000 + decision.retry_after_seconds
    assert take(bucket, rate, later)[1]
    # Whole seconds rounded up: a second less would not always do.
    if decision.retry_after_seconds > 1:
        assert not take(bucket, rate, later - 1)[1]


def test_a_fresh_bucket_allows_its_burst_then_refuses_until_a_token_refills() -> None:
    rate = Rate(6, 60, 3)  # a token every 10 s
    bucket, decisions = None, []
    for _ in range(4):
        bucket, allowed = take(bucket, rate, 100.0)
        decisions.append(Decision.of(rate, bucket.tokens, allowed))
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert [d.reset_seconds for d in decisions] == [10, 20, 30, 30]
    assert decisions[-1].retry_after_seconds == 10
    assert not take(bucket, rate, 109.9)[1]
    assert take(bucket, rate, 110.0)[1]


def test_a_refused_request_takes_nothing_and_a_clock_going_back_refills_nothing() -> None:
    rate = Rate(1, 1, 2)
    bucket = Bucket(0.5, 10.0)
    after, allowed = take(bucket, rate, 10.0)
    assert not allowed and after.tokens == 0.5
    assert not take(bucket, rate, 9.0)[1]  # another server's clock, behind: still half a token
    assert take(bucket, rate, 10.5)[1]


def test_a_cost_beyond_the_burst_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        take(None, Rate(10, 1, 5), 0.0, cost=6)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("100/min", Rate(100, 60, 100)),
        ("100/min,burst=20", Rate(100, 60, 20)),
        (" 5 / s , burst = 50 ", Rate(5, 1, 50)),
        ("OFF", None),
        ("", Settings().rate_limits["read"]),
    ],
)
def test_rates_are_read_from_the_environment(raw: str, expected: Rate | None) -> None:
    assert Settings.from_env({"RATE_LIMIT_READ": raw}).rate_limits["read"] == expected


def test_defaults_limit_every_class_but_not_the_api_tokens() -> None:
    settings = Settings.from_env({})
    assert settings.rate_limit_api_tokens is False
    assert {c: str(r) for c, r in settings.rates().items()} == {
        "assignment": "200/s",
        "ingestion": "50/s",
        "admin": "30/min",
        "read": "20/s",
    }
    assert Settings.from_env({"RATE_LIMIT_API_TOKENS": "true"}).rate_limit_api_tokens is True
    off = Settings.from_env({"RATE_LIMIT_ADMIN": "off"})
    assert "admin" not in off.rates() and "read" in off.rates()


@pytest.mark.parametrize(
    "raw", ["100", "100/h", "0/s", "10/s,burst=0", "-1/s", "10/s burst 5", "1.5/s", "ten/min"]
)
def test_a_bad_rate_is_one_clear_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"RATE_LIMIT_INGESTION": raw})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("RATE_LIMIT_INGESTION must be") and repr(raw) in message
