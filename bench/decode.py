"""Python time per 1,000-event batch from the body's bytes to the columns the store writes.

    .venv/bin/python bench/decode.py [--rounds 9] [--calls 200] [--events 1000]

"before": main's per-event path as of 1b7bff4 (tests/per_event_path.py: msgspec into a Struct
per event, an EventDraft, a domain Event with its timestamp in UTC, the rules one by one, then
EventBatch.of). "after": ``decode_events`` (a Struct per event from msgspec with the limits
checked in C, then one list per field) plus what the use case does before the store: its
experiments looked up, timestamps the client left out stamped. Both look experiments up in a
set, so neither pays the cache. Two variants of "after" show the choices made in
entrypoints/http/resources/events.py: NUL refused by a ``pattern`` constraint instead of one search of the
joined column, and the Structs tracked by the garbage collector.

Every round times each path on the same bodies, in turn; the median round is printed. The time
is this process's CPU time, which other loads on the machine disturb less than the wall clock.
The collector runs, with the startup's objects frozen as in the server (entrypoints/asgi.py).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec  # noqa: E402

from domain.assignment import MAX_USER_ID_LENGTH  # noqa: E402
from domain.event import MAX_EVENT_ID_LENGTH, EventBatch, NewEvents  # noqa: E402
from domain.experiment import MAX_EVENT_TYPE_LENGTH  # noqa: E402
from entrypoints.http.resources import events as schemas  # noqa: E402
from entrypoints.http.resources.events import Batch, breaks_a_rule, columns, decode_events  # noqa: E402
from tests.per_event_path import per_event_path  # noqa: E402

EXPERIMENT = "0191d2c3e4f5a6b7c8d9e0f1a2b3c4d5"
KNOWN = {EXPERIMENT}
T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)


def body(n: int, *, timestamps: bool, values: bool, event_ids: bool, properties: bool) -> bytes:
    events = []
    for i in range(n):
        e: dict[str, Any] = {
            "experiment_id": EXPERIMENT,
            "user_id": f"user-{i * 7919 % 100_000}",
            "event_type": ("view", "click", "purchase")[i % 3],
        }
        if timestamps:
            e["timestamp"] = (T0 + timedelta(milliseconds=37 * i)).isoformat().replace("+00:00", "Z")
        if values:
            e["value"] = round(i * 0.37 % 100, 2)
        if event_ids:
            e["event_id"] = f"order-{i:08d}"
        if properties:
            e["properties"] = {"sku": f"A-{i % 500}", "qty": i % 4 + 1, "coupon": None}
        events.append(e)
    return msgspec.json.encode({"events": events})


SHAPES = {
    "typical: timestamp, value, event_id": dict(timestamps=True, values=True, event_ids=True, properties=False),
    "required fields only": dict(timestamps=False, values=False, event_ids=False, properties=False),
    "every field, with properties": dict(timestamps=True, values=True, event_ids=True, properties=True),
}


def before(raw: bytes) -> EventBatch:
    return per_event_path(raw, received_at=T0, known=KNOWN)


def after(raw: bytes) -> EventBatch:
    decoded = decode_events(raw)
    assert isinstance(decoded, Batch)
    return _use_case(decoded.events)


def _use_case(events: NewEvents) -> EventBatch:
    assert not set(events.experiment_ids) - KNOWN  # RecordEvents: one lookup per distinct id
    return events.stamped(T0)


def _variant(event_in: type) -> Callable[[bytes], EventBatch]:
    batch_in = msgspec.defstruct("EventBatchIn", [("events", list[event_in])])

    def decode(raw: bytes) -> EventBatch:
        events = columns(msgspec.json.decode(raw, type=batch_in).events)
        assert not breaks_a_rule(events)
        return _use_case(events)

    return decode


LIMITS = {"user_id": MAX_USER_ID_LENGTH, "event_type": MAX_EVENT_TYPE_LENGTH, "event_id": MAX_EVENT_ID_LENGTH}


def variants() -> dict[str, Callable[[bytes], EventBatch]]:
    hints = typing.get_type_hints(schemas.EventIn, include_extras=True)
    defaults = dict(zip(schemas.EventIn.__struct_fields__[-len(schemas.EventIn.__struct_defaults__):],
                        schemas.EventIn.__struct_defaults__))

    def event_in(*, gc_flag: bool, nul_pattern: bool) -> type:
        fields = []
        for name in schemas.EventIn.__struct_fields__:
            hint = hints[name]
            if nul_pattern and name in LIMITS:
                meta = msgspec.Meta(min_length=1, max_length=LIMITS[name], pattern="^[^\x00]*$")
                hint = Annotated[str, meta] if name != "event_id" else Annotated[str, meta] | None
            fields.append((name, hint, defaults[name]) if name in defaults else (name, hint))
        return msgspec.defstruct("EventIn", fields, gc=gc_flag)

    return {
        "after, NUL by a pattern constraint": _variant(event_in(gc_flag=False, nul_pattern=True)),
        "after, Structs tracked by the GC": _variant(event_in(gc_flag=True, nul_pattern=False)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()

    paths: dict[str, Callable[[bytes], EventBatch]] = {"before": before, "after": after, **variants()}
    bodies = {shape: body(args.events, **flags) for shape, flags in SHAPES.items()}
    for shape, raw in bodies.items():  # every path gives main's columns
        expected = before(raw)
        for name, path in paths.items():
            assert path(raw) == expected, (shape, name)

    gc.collect()
    gc.freeze()
    per = 1000 / args.events
    print(f"CPU ms per 1,000 events (= µs per event), median of {args.rounds} rounds of {args.calls} calls "
          f"({args.events} events per batch); Python {sys.version.split()[0]}, msgspec {msgspec.__version__}")
    for shape, raw in bodies.items():
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, path in paths.items():
                started = time.process_time()
                for _ in range(args.calls):
                    path(raw)
                times[name].append((time.process_time() - started) / args.calls * 1000 * per)
        medians = {name: statistics.median(t) for name, t in times.items()}
        print(f"\n{shape} ({len(raw) / 1024:.0f} KiB per batch)")
        for name, ms in medians.items():
            spread = f"{min(times[name]):.2f}–{max(times[name]):.2f}"
            ratio = medians["before"] / ms
            print(f"  {name:38s} {ms:6.2f} ms  (rounds {spread})  ×{ratio:.1f} faster than before")


if __name__ == "__main__":
    main()
