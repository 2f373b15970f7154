"""Decoding events: a valid batch goes straight to columns, checked in C; a bad one names every
fault the way main's per-event path did (tests/per_event_path.py, the oracle)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapters.memory.cache import MemoryCache
from adapters.memory.store import MemoryStore
from application.experiments import CreateExperiment, GetExperiment
from application.tracking import RecordEvents
from domain.errors import (
    DomainError,
    ExperimentNotFound,
    FieldError,
    UnknownExperiments,
    ValidationFailed,
)
from domain.event import OUT_OF_RANGE, EventBatch, NewEvents, to_micros
from domain.experiment import VariantDraft
from entrypoints.http.decoding import MalformedBody
from entrypoints.http.resources import events as decoding
from entrypoints.http.resources.events import Batch, InvalidBatch, OneEvent, decode_events
from tests.fakes import FakeClock, SequentialIds
from tests.per_event_path import per_event_path

T = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KNOWN = "id000001"  # the first id SequentialIds gives: the experiment the tests create


def ev(**fields: Any) -> dict[str, Any]:
    return {"experiment_id": KNOWN, "user_id": "u-1", "event_type": "view", **fields}


def batch(*events: Any) -> bytes:
    return msgspec.json.encode({"events": list(events)})


@pytest.fixture
def fast_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a batch leaves the fast path."""

    def refuse(raw: msgspec.Raw) -> None:
        raise AssertionError(f"the fast path refused {bytes(raw)[:200]!r}")

    monkeypatch.setattr(decoding, "_one_by_one", refuse)


# ---------------------------------------------------------------------------------------------
# a valid batch: exact columns


def test_a_valid_batch_becomes_exact_columns(fast_path_only: None) -> None:
    raw = b"""{"events": [
      {"experiment_id": "e1", "user_id": "u-1", "event_type": "buy", "timestamp": "2026-11-28T14:00:00+02:00",
       "value": 19.99, "properties": {"sku": "A-1", "n": [1, 2.5, null], "\xc3\xa9": "\\u00fc"}, "event_id": "k-1",
       "unknown field": "ignored"},
      {"experiment_id": "e1", "user_id": "u-2", "event_type": "view", "timestamp": "2026-11-28T12:00:00.000001",
       "value": 3},
      {"experiment_id": "e2", "user_id": "u-3", "event_type": "view", "timestamp": "1969-12-31T23:59:59Z"}
    ]}"""
    decoded = decode_events(raw)
    assert decoded == Batch(
        NewEvents(
            experiment_ids=["e1", "e1", "e2"],
            user_ids=["u-1", "u-2", "u-3"],
            event_types=["buy", "view", "view"],
            timestamps=[to_micros(T), to_micros(T) + 1, -1_000_000],
            values=[19.99, 3.0, None],
            properties=['{"sku":"A-1","n":[1,2.5,null],"é":"ü"}', None, None],
            event_ids=["k-1", None, None],
        )
    )
    assert isinstance(decoded.events.values[1], float)


def test_timestamps_left_out_are_the_time_received() -> None:
    decoded = decode_events(batch(ev(), ev(timestamp="2026-11-28T12:00:00Z"), ev()))
    assert isinstance(decoded, Batch)
    assert decoded.events.timestamps == [None, to_micros(T), None]
    later = T + timedelta(hours=1, microseconds=7)
    stamped = decoded.events.stamped(later)
    assert stamped.timestamps == [to_micros(later), to_micros(T), to_micros(later)]
    assert stamped.user_ids is decoded.events.user_ids  # the columns are shared, not copied


def test_a_single_event_is_one_event() -> None:
    decoded = decode_events(msgspec.json.encode(ev(value=1, event_id="k")))
    assert decoded == OneEvent(
        NewEvents([KNOWN], ["u-1"], ["view"], [None], [1.0], [None], ["k"])
    )


def test_an_empty_batch_decodes_and_is_left_to_the_use_case() -> None:
    assert decode_events(b'{"events": []}') == Batch(NewEvents([], [], [], [], [], [], []))


# ---------------------------------------------------------------------------------------------
# each rule: the field and the message, in a batch and alone

LIMIT = 64 * 1024
BROKEN_RULES: dict[str, tuple[dict[str, Any], str, str]] = {
    "empty user_id": ({"user_id": ""}, "user_id", "must be 1 to 256 characters"),
    "user_id of 257": ({"user_id": "u" * 257}, "user_id", "must be 1 to 256 characters"),
    "user_id of 257 astral": ({"user_id": "😀" * 257}, "user_id", "must be 1 to 256 characters"),
    "NUL in user_id": ({"user_id": "a\x00b"}, "user_id", "must not contain the NUL character"),
    "empty event_type": ({"event_type": ""}, "event_type", "must be 1 to 100 characters"),
    "event_type of 101": ({"event_type": "t" * 101}, "event_type", "must be 1 to 100 characters"),
    "NUL in event_type": ({"event_type": "\x00"}, "event_type", "must not contain the NUL character"),
    "empty event_id": ({"event_id": ""}, "event_id", "must be 1 to 256 characters"),
    "event_id of 257": ({"event_id": "k" * 257}, "event_id", "must be 1 to 256 characters"),
    "NUL in event_id": ({"event_id": "k\x00"}, "event_id", "must not contain the NUL character"),
    # msgspec refuses a number beyond a double's range as it parses: no infinity gets through.
    "value 1e999": ({"value": msgspec.Raw(b"1e999")}, "value", "Number out of range"),
    "value -1e999": ({"value": msgspec.Raw(b"-1e999")}, "value", "Number out of range"),
    "value just past the largest double": (
        {"value": msgspec.Raw(b"1.7976931348623159e308")}, "value", "Number out of range",
    ),
    "value of 400 digits": ({"value": msgspec.Raw(b"1" + b"0" * 400)}, "value", "Number out of range"),
    "value as text": ({"value": "1.5"}, "value", "Expected `float | null`, got `str`"),
    "timestamp before year 1 in UTC": (
        {"timestamp": "0001-01-01T00:00:00+00:01"}, "timestamp", OUT_OF_RANGE,
    ),
    "timestamp after year 9999 in UTC": (
        {"timestamp": "9999-12-31T23:59:59.999999-00:01"}, "timestamp", OUT_OF_RANGE,
    ),
    "timestamp unparseable": (
        {"timestamp": "yesterday"}, "timestamp", "Invalid RFC3339 encoded datetime",
    ),
    "properties one byte over": (
        {"properties": {"a": "x" * (LIMIT - 7)}}, "properties", f"must be at most {LIMIT} bytes serialized",
    ),
    "properties over in bytes, not characters": (
        {"properties": {"a": "é" * ((LIMIT - 8) // 2 + 1)}}, "properties", f"must be at most {LIMIT} bytes serialized",
    ),
    "properties as a list": ({"properties": [1]}, "properties", "Expected `object | null`, got `array`"),
    "user_id of wrong type": ({"user_id": 5}, "user_id", "Expected `str`, got `int`"),
}


@pytest.mark.parametrize("fields,field,message", list(BROKEN_RULES.values()), ids=list(BROKEN_RULES))
def test_each_broken_rule_is_named_with_its_message(fields: dict, field: str, message: str) -> None:
    raw = batch(ev(event_id="g0"), ev(**fields), ev(event_id="g2"))
    decoded = decode_events(raw)
    assert isinstance(decoded, InvalidBatch)
    want = [FieldError(f"events[1].{field}", message)]
    assert decoded.failure(set()).errors == want
    with pytest.raises(ValidationFailed) as main:
        per_event_path(raw, received_at=T, known={KNOWN})
    assert main.value.errors == want  # as main said it
    with pytest.raises(ValidationFailed) as alone:
        decode_events(msgspec.json.encode(ev(**fields)))
    assert alone.value.errors == [FieldError(field, message)]


def test_a_missing_field_and_an_event_that_is_no_object() -> None:
    decoded = decode_events(batch({"experiment_id": KNOWN, "event_type": "view"}, [1], ev()))
    assert isinstance(decoded, InvalidBatch)
    assert decoded.failure(set()).errors == [
        FieldError("events[0].user_id", "is required"),
        FieldError("events[1]", "Expected `object`, got `array`"),
    ]
    assert decoded.experiment_ids == {2: KNOWN}  # the events that could be read


def test_every_fault_of_an_event_in_main_order_then_its_unknown_experiment() -> None:
    bad = ev(experiment_id="nope", user_id="", event_type="t" * 101,
             timestamp="0001-01-01T00:00:00+01:00", event_id="\x00", properties={"a": "x" * LIMIT})
    decoded = decode_events(batch(ev(), bad, ev(experiment_id="gone")))
    assert isinstance(decoded, InvalidBatch)
    errors = decoded.failure({"nope", "gone"}).errors
    assert [e.field for e in errors] == [
        "events[1].timestamp", "events[1].event_id", "events[1].user_id", "events[1].event_type",
        "events[1].properties", "events[1].experiment_id", "events[2].experiment_id",
    ]


ACCEPTED_AT_THE_BOUNDS: dict[str, dict[str, Any]] = {
    "user_id of 1": {"user_id": "u"},
    "user_id of 256": {"user_id": "u" * 256},
    "user_id of 256 two-byte characters": {"user_id": "é" * 256},
    "user_id of 256 astral characters": {"user_id": "😀" * 256},
    "event_type of 100": {"event_type": "t" * 100},
    "event_id of 256": {"event_id": "k" * 256},
    "largest finite value": {"value": 1.7976931348623157e308},
    "most negative finite value": {"value": -1.7976931348623157e308},
    "smallest subnormal value": {"value": 5e-324},
    "properties of exactly 64 KiB": {"properties": {"a": "x" * (LIMIT - 8)}},
    "properties of 64 KiB in two-byte characters": {"properties": {"a": "é" * ((LIMIT - 8) // 2)}},
    "NUL inside properties": {"properties": {"a\x00": "\x00"}},
    "NUL in experiment_id (an unknown experiment, for the use case)": {"experiment_id": "e\x00"},
    "first instant, in UTC": {"timestamp": "0001-01-01T00:00:00Z"},
    "first instant, without offset": {"timestamp": "0001-01-01T00:00:00"},
    "first instant, with an offset": {"timestamp": "0001-01-01T01:00:00+01:00"},
    "last instant, in UTC": {"timestamp": "9999-12-31T23:59:59.999999Z"},
    "last instant, with an offset": {"timestamp": "9999-12-31T22:59:59.999999-01:00"},
}


@pytest.mark.parametrize("fields", list(ACCEPTED_AT_THE_BOUNDS.values()), ids=list(ACCEPTED_AT_THE_BOUNDS))
def test_the_fast_path_accepts_what_the_rules_accept_at_the_bounds(fast_path_only: None, fields: dict) -> None:
    raw = batch(ev(), ev(**fields))
    decoded = decode_events(raw)
    assert isinstance(decoded, Batch)
    known = {KNOWN, "e\x00"}
    assert decoded.events.stamped(T) == per_event_path(raw, received_at=T, known=known)


def test_nul_in_properties_is_stored_escaped() -> None:
    decoded = decode_events(batch(ev(properties={"a": "\x00"})))
    assert isinstance(decoded, Batch)
    assert decoded.events.properties == ['{"a":"\\u0000"}']


def test_a_batch_too_large_with_a_bad_event_is_named_by_its_size() -> None:
    with pytest.raises(ValidationFailed) as exc:
        decode_events(batch(*[ev(user_id="")] * 10_001))
    assert exc.value.errors == [FieldError("events", "must hold 1 to 10000 events, got 10001")]


def test_events_that_are_no_list() -> None:
    with pytest.raises(ValidationFailed) as exc:
        decode_events(b'{"events": {"a": 1}}')
    assert [e.field for e in exc.value.errors] == ["events"]


def test_malformed_json_after_a_bad_event_is_malformed() -> None:
    with pytest.raises(MalformedBody):
        decode_events(b'{"events": [{"user_id": 5}, ')


def test_a_batch_the_fast_path_refused_for_no_fault_is_accepted() -> None:
    """Whatever made the fast path give up, events that keep every rule are a batch."""
    raw = msgspec.Raw(batch(ev(), ev(value=2))[len(b'{"events":') : -1])
    decoded = decoding._one_by_one(raw)
    assert decoded == Batch(NewEvents([KNOWN] * 2, ["u-1"] * 2, ["view"] * 2, [None] * 2, [None, 2.0], [None] * 2, [None] * 2))


# ---------------------------------------------------------------------------------------------
# unknown experiments: 404 alone, 422 by index in a batch


def test_unknown_experiments_are_told_by_the_shape_of_the_body() -> None:
    exc = UnknownExperiments({1: "nope", 3: "gone"})
    one = OneEvent(NewEvents(["nope"], ["u"], ["t"], [None], [None], [None], [None]))
    assert isinstance(one.unknown(UnknownExperiments({0: "nope"})), ExperimentNotFound)
    failure = Batch(one.events).unknown(exc)
    assert isinstance(failure, ValidationFailed)
    assert failure.errors == [
        FieldError("events[1].experiment_id", "experiment does not exist"),
        FieldError("events[3].experiment_id", "experiment does not exist"),
    ]


# ---------------------------------------------------------------------------------------------
# property-based: the columnar path against main's per-event path


class CapturingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[EventBatch] = []

    async def add_events(self, batch: EventBatch) -> int:
        self.batches.append(batch)
        return len(batch)


class Service:
    """The use case on in-memory adapters, with one experiment (KNOWN) and a fixed clock."""

    def __init__(self) -> None:
        self.store = CapturingStore()
        cache = MemoryCache()
        clock = FakeClock(T)
        create = CreateExperiment(self.store, cache, clock, SequentialIds())
        experiment = asyncio.run(
            create(name="e", actor="tester", variants=[VariantDraft("a", 50), VariantDraft("b", 50)])
        )
        assert experiment.id == KNOWN
        # The reference path predates the clock-skew rule (tests/e2e/test_strict_inputs.py has
        # it): a skew to the end of year 9999 lets every timestamp in range through.
        to_the_end = datetime.max.replace(tzinfo=UTC) - T
        self.record = RecordEvents(GetExperiment(self.store, cache), self.store, clock, to_the_end)

    def columnar_path(self, raw: bytes) -> EventBatch:
        """The service's path for a batch body, as the handler runs it; raises what it raises."""
        return asyncio.run(self._columnar_path(raw))

    async def _columnar_path(self, raw: bytes) -> EventBatch:
        body = decode_events(raw)
        if isinstance(body, InvalidBatch):
            raise body.failure(await self.record.unknown_experiments(body.experiment_ids.values()))
        try:
            await self.record(body.events)
        except UnknownExperiments as exc:
            raise body.unknown(exc) from None
        return self.store.batches.pop()


@pytest.fixture(scope="module")
def service() -> Service:
    return Service()


PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999),
    timezones=st.none() | st.just(UTC) | offsets,
)


def valid_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=max_size)


valid_events = st.fixed_dictionaries(
    {"experiment_id": st.just(KNOWN), "user_id": valid_text(256), "event_type": valid_text(100)},
    optional={
        "timestamp": moments.filter(lambda m: m.tzinfo is None or _in_range(m)),
        "value": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**63) | st.none(),
        "properties": st.dictionaries(st.text(max_size=5), json_values, max_size=4) | st.none(),
        "event_id": valid_text(256) | st.none(),
        "ignored": json_values,
    },
)


def _in_range(moment: datetime) -> bool:
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True


@PROPERTY
@given(events=st.lists(valid_events, min_size=1, max_size=20))
def test_a_valid_batch_gives_the_columns_main_gave(service: Service, events: list[dict]) -> None:
    raw = batch(*events)
    assert service.columnar_path(raw) == per_event_path(raw, received_at=T, known={KNOWN})


def near(max_size: int) -> st.SearchStrategy[Any]:
    """Text at and around its bounds, with and without NUL, in characters of one to four bytes."""
    sized = st.builds(
        lambda c, n: c * n, st.sampled_from(["u", "é", "😀", "\x00"]), st.sampled_from([0, 1, max_size, max_size + 1])
    )
    return sized | st.text(st.characters(codec="utf-8"), max_size=4) | st.integers(0, 9)


big_properties = st.integers(LIMIT - 9, LIMIT - 7).map(lambda n: {"a": "x" * n})
any_events = st.fixed_dictionaries(
    {"experiment_id": st.sampled_from([KNOWN, "nope", "e\x00"])},
    optional={
        "user_id": near(256),
        "event_type": near(100),
        "timestamp": moments | st.sampled_from(["yesterday", "2026-11-28"]),
        "value": st.floats(allow_nan=False, allow_infinity=False) | st.none() | st.just("1.5")
        | st.sampled_from([msgspec.Raw(t) for t in (b"1e999", b"-1e999", b"1.8e308", b"1" + b"0" * 400)]),
        "properties": st.dictionaries(st.text(max_size=3), json_values, max_size=2) | big_properties
        | st.none() | st.just([1]),
        "event_id": near(256) | st.none(),
    },
) | json_values


def _outcome(path: Any, raw: bytes) -> EventBatch | tuple[str, Any]:
    try:
        return path(raw)
    except ValidationFailed as exc:
        return ("422", exc.errors)
    except (DomainError, MalformedBody) as exc:  # pragma: no cover - a difference to report
        return (type(exc).__name__, str(exc))


@PROPERTY
@given(events=st.lists(any_events, min_size=1, max_size=6))
def test_any_batch_is_accepted_or_refused_as_main_did_with_the_same_errors(
    service: Service, events: list[Any]
) -> None:
    raw = batch(*events)
    main = _outcome(lambda r: per_event_path(r, received_at=T, known={KNOWN}), raw)
    event("accepted" if isinstance(main, EventBatch) else "refused")
    assert _outcome(service.columnar_path, raw) == main
