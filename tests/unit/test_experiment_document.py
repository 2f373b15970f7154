"""An experiment has one JSON form (``Experiment.document``): the wire copies it, the audit
trail records it. Held with every field set, so that a field added to Experiment and left out
of the form fails here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from adapters.memory.cache import MemoryCache
from adapters.memory.store import MemoryStore
from application.experiments import CreateExperiment
from domain.analysis import Analysis
from domain.experiment import VariantDraft
from entrypoints.http.resources.experiments import ExperimentOut
from tests.every_field import an_experiment_with_every_field, fields
from tests.fakes import FakeClock, SequentialIds


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


# How each field of Experiment reads back from its JSON form: a field missing here fails the
# test, so that a new field is either carried or, with a reason, left out on purpose.
READ_BACK: dict[str, Any] = {
    "id": lambda d, e: d["id"] == e.id,
    "name": lambda d, e: d["name"] == e.name,
    "description": lambda d, e: d["description"] == e.description,
    "primary_event_type": lambda d, e: d["primary_event_type"] == e.primary_event_type,
    "created_at": lambda d, e: _when(d["created_at"]) == e.created_at,
    "variants": lambda d, e: [(v["id"], v["name"], round(v["traffic_percentage"] * 100), v["is_control"]) for v in d["variants"]]
    == [(v.id, v.name, v.traffic_basis_points, v.is_control) for v in e.variants],
    "status": lambda d, e: d["status"] == e.status.value,
    "coverage_basis_points": lambda d, e: round(d["coverage"] * 100) == e.coverage_basis_points,
    "audience": lambda d, e: d["audience"] == e.audience.source,
    "winner_variant_id": lambda d, e: d["winner_variant_id"] == e.winner_variant_id,
    "started_at": lambda d, e: _when(d["started_at"]) == e.started_at,
    "stopped_at": lambda d, e: _when(d["stopped_at"]) == e.stopped_at,
    "overrides": lambda d, e: [(o["user_id"], o["variant_id"], _when(o["forced_at"])) for o in d["overrides"]]
    == [(o.user_id, o.variant_id, o.forced_at) for o in e.overrides],
    "layer": lambda d, e: (d["layer"]["id"], d["layer"]["start"], d["layer"]["end"])
    == (e.layer.layer_id, e.layer.slice.start, e.layer.slice.end),
    "holdout": lambda d, e: d["holdout_id"] == e.holdout.holdout_id,
    "analysis": lambda d, e: Analysis.parse(d["analysis"]) == e.analysis,
}
LEFT_OUT = {"version": "the store's optimistic lock, not part of the experiment as people see it"}


def test_every_field_is_in_the_json_form_or_left_out_with_a_reason() -> None:
    assert {f.name for f in fields()} == set(READ_BACK) | set(LEFT_OUT)


def test_the_wire_carries_every_field_through_json() -> None:
    experiment = an_experiment_with_every_field()
    sent = msgspec.json.encode(ExperimentOut.of(experiment))
    received = msgspec.json.decode(sent)
    for name, read_back in READ_BACK.items():
        assert read_back(received, experiment), name
    assert received == experiment.document()  # and nothing else


async def test_the_audit_trail_records_the_same_form_at_creation() -> None:
    store, clock, ids = MemoryStore(), FakeClock(), SequentialIds()
    create = CreateExperiment(store, MemoryCache(), clock, ids)
    drafts = [VariantDraft("a", 50, True), VariantDraft("b", 50)]
    experiment = await create(actor="ci", name="x", variants=drafts, coverage=30,
                              audience={"attribute": "plan", "op": "eq", "value": "pro"})
    entries, _ = await store.list_audit(10, 0)
    assert entries[0].details == experiment.document()
    assert msgspec.json.decode(msgspec.json.encode(entries[0].details)) == msgspec.to_builtins(ExperimentOut.of(experiment))
