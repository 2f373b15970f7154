"""The Python client's local decision is the service's: for random experiments (any split,
status, coverage, layer slice, holdout, QA overrides and audience), users and attributes,
``experiments_client.local.decide`` on the experiment's definition answers what the service
answers a user it has not stored yet. And the definitions the client reads are the service's
own document (``GET /definitions``), decoded."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgspec
from experiments_client.audience import Audience
from experiments_client.definitions import (
    Decision,
    Definitions,
    ExperimentDefinition,
    HoldoutDefinition,
    LayerDefinition,
    OverrideDefinition,
    VariantDefinition,
)
from experiments_client.local import CompiledExperiment, decide
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from domain.assignment import Assignment, serve, standing, validate_user_id
from domain.eligibility import Gate, Reason
from domain.errors import ValidationFailed
from domain.experiment import BUCKETS, Experiment, Override
from domain.layers import HoldoutRef, LayerSlot, Slice
from domain.lifecycle import Status
from domain.targeting import parse_audience
from entrypoints.http.resources.local_assignment import DefinitionsOut, ExperimentDefinitionOut
from tests.factories import T0, an_experiment

# ------------------------------------------------------------------------------ both sides


def service_decision(experiment: Experiment, user_id: str, attributes: dict[str, Any]) -> Decision:
    """What ``application.assignment.AssignUser`` answers a user it has no assignment of, in its
    order, with the store left out: the override or the status (``standing``), then the gate,
    then the hash (``Assignment.decide``)."""
    validate_user_id(user_id, "user_id")
    if (fixed := standing(experiment, user_id)) is not None:
        variant, served = fixed
        return answer(
            experiment, user_id, variant.id, served, in_experiment=served is Reason.FORCED
        )
    gate = Gate.of(experiment)
    if gate is not None and (excluded := gate.exclusion(user_id, attributes or {})) is not None:
        return answer(experiment, user_id, experiment.control.id, excluded, in_experiment=False)
    assignment = Assignment.decide(experiment, user_id, T0)
    return answer(experiment, user_id, assignment.variant_id, Reason.ASSIGNED, in_experiment=True)


def answer(
    experiment: Experiment, user_id: str, variant_id: str, reason: Reason, in_experiment: bool
) -> Decision:
    variant = experiment.variant(variant_id)
    assert variant is not None
    reason_value: Any = reason.value  # one of the Decision's reasons: Reason's values are theirs
    return Decision(experiment.id, user_id, variant.id, variant.name, in_experiment, reason_value)


def definition_of(e: Experiment) -> ExperimentDefinition:
    """The experiment as ``GET /definitions`` carries it to a client."""
    return ExperimentDefinition(
        id=e.id,
        name=e.name,
        status=e.status.value,  # type: ignore[arg-type]
        variants=tuple(
            VariantDefinition(v.id, v.name, v.traffic_basis_points, v.is_control)
            for v in e.variants
        ),
        coverage_basis_points=e.coverage_basis_points,
        audience=None if e.audience is None else e.audience.source,
        layer=None
        if e.layer is None
        else LayerDefinition(
            e.layer.layer_id, e.layer.seed, e.layer.slice.start, e.layer.slice.end
        ),
        holdout=None
        if e.holdout is None
        else HoldoutDefinition(e.holdout.holdout_id, e.holdout.seed, e.holdout.basis_points),
        winner_variant_id=e.winner_variant_id,
        overrides=tuple(OverrideDefinition(o.user_id, o.variant_id) for o in e.overrides),
    )


# ------------------------------------------------------------------------------ random inputs

USERS = ["u-1", "user-42", "qa", "ü-ñîcødé", "😀", "a:b", "0", "x" * 256]
user_ids = st.sampled_from(USERS) | st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1, max_size=256
)
bps = st.integers(0, BUCKETS)
seeds = st.text("abcdefghijklmnopqrstuvwxyz0123456789-:", min_size=1, max_size=12)

VERSIONS = [
    "1.0.0",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "v1.2",
    "1.2.0",
    "2.0.0",
    "2.10.0",
    "10.0.0",
    "1.0.0+build.7",
    "0.9.1-0",
]
NAMES = ["plan", "n", "app"]  # few, so that rules and attributes often name the same one
# One small pool for rules and attributes alike, so that they often meet: the values where
# JSON's equality is not Python's (True and 1, "1" and 1, 1 and 1.0), and versions.
VALUES = [None, True, False, 0, 1, 1.0, -0.0, 2.5, "1", "", "pro", *VERSIONS]
numbers = st.integers(-5, 5) | st.floats(-5, 5, allow_nan=False)
scalars = st.sampled_from(VALUES) | numbers


def comparison(name: str, op: str, value: Any) -> dict[str, Any]:
    return {"attribute": name, "op": op, "value": value}


comparisons = st.one_of(
    st.builds(comparison, st.sampled_from(NAMES), st.sampled_from(["eq", "ne"]), scalars),
    st.builds(
        comparison,
        st.sampled_from(NAMES),
        st.sampled_from(["in", "not_in"]),
        st.lists(scalars, min_size=1, max_size=4),
    ),
    st.builds(
        comparison, st.sampled_from(NAMES), st.sampled_from(["lt", "lte", "gt", "gte"]), numbers
    ),
    st.builds(
        comparison,
        st.sampled_from(NAMES),
        st.sampled_from(["version_eq", "version_lt", "version_lte", "version_gt", "version_gte"]),
        st.sampled_from(VERSIONS),
    ),
)
rules = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda rs: {"all": rs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda rs: {"any": rs}),
        inner.map(lambda r: {"not": r}),
    ),
    max_leaves=6,
)
attribute_values = (
    st.sampled_from(
        [*VALUES, float("nan"), float("inf"), -float("inf"), 10**20, [1], {"nested": 1}]
    )
    | numbers
)
attributes = st.dictionaries(st.sampled_from(NAMES), attribute_values, max_size=len(NAMES))


@st.composite
def experiments(draw: st.DrawFn) -> Experiment:
    """A valid experiment as the service holds it: built by ``an_experiment`` from 2 to 5
    variants with random basis points summing to 10,000, then given the rest as a live
    experiment may have it."""
    cuts = sorted(draw(st.lists(st.integers(0, BUCKETS), min_size=1, max_size=4)))
    shares = [b - a for a, b in zip([0, *cuts], [*cuts, BUCKETS], strict=True)]
    control = draw(st.integers(0, len(shares) - 1))
    base = an_experiment("e", [s / 100 for s in shares], control=control, ids=draw(seeds))
    variant_ids = [v.id for v in base.variants]
    overrides = draw(
        st.lists(st.tuples(st.sampled_from(USERS[:3]), st.sampled_from(variant_ids)), max_size=2)
    )
    slices = st.sampled_from([(0, BUCKETS), (0, 5000), (5000, BUCKETS)]) | st.tuples(bps, bps).map(
        sorted
    )
    layer = draw(st.none() | st.tuples(seeds, slices))
    holdout = draw(
        st.none()
        | st.tuples(seeds, st.sampled_from([1, 2500, 5000]) | st.integers(0, BUCKETS // 2))
    )
    audience = draw(st.none() | rules)
    return replace(
        base,
        status=draw(st.just(Status.RUNNING) | st.sampled_from(list(Status))),  # mostly running
        coverage_basis_points=draw(st.just(BUCKETS) | st.sampled_from([0, 1, 5000, 9999]) | bps),
        audience=None if audience is None else parse_audience(audience),
        winner_variant_id=draw(st.none() | st.sampled_from(variant_ids)),
        overrides=tuple(
            {user: Override(user, variant, T0) for user, variant in overrides}.values()
        ),
        layer=None if layer is None else LayerSlot("layer-1", layer[0], Slice(*layer[1])),
        holdout=None if holdout is None else HoldoutRef("holdout-1", *holdout),
    )


# ------------------------------------------------------------------------------ the properties

PARITY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PARITY
@given(
    experiment=experiments(),
    users=st.lists(user_ids, min_size=1, max_size=8),
    attributes=attributes,
)
def test_the_clients_decision_is_the_services(
    experiment: Experiment, users: list[str], attributes: dict[str, Any]
) -> None:
    compiled = CompiledExperiment.of(definition_of(experiment))
    for user in users:
        expected = service_decision(experiment, user, attributes)
        event(expected.reason)  # --hypothesis-show-statistics: how often each reason came up
        assert decide(compiled, user, attributes) == expected
        variant, reason = serve(experiment, user, attributes)  # the server's own local order
        assert (expected.variant_id, expected.reason) == (variant.id, reason.value)


@settings(max_examples=2000, deadline=None)
@given(rule=rules, attributes=attributes)
def test_the_clients_audience_is_the_services(
    rule: dict[str, Any], attributes: dict[str, Any]
) -> None:
    """The audience alone, over many more rules than the whole decision reaches."""
    assert Audience(rule).admits(attributes) is parse_audience(rule).admits(attributes)


identifiers = st.sampled_from(["0", "1", "2", "11", "alpha", "beta", "rc", "a-b", "01", "x.y"])
versions = st.sampled_from(VERSIONS) | st.builds(
    lambda core, pre, build: (
        ".".join(map(str, core)) + (f"-{'.'.join(pre)}" if pre else "") + build
    ),
    st.lists(st.integers(0, 3), min_size=1, max_size=3),
    st.lists(identifiers, max_size=3),
    st.sampled_from(["", "+b.7"]),
)
VERSION_OPS = ["version_eq", "version_lt", "version_lte", "version_gt", "version_gte"]


@settings(max_examples=1000, deadline=None)
@given(actual=versions | st.text(max_size=8), op=st.sampled_from(VERSION_OPS), value=versions)
def test_the_clients_versions_order_as_the_services(actual: str, op: str, value: str) -> None:
    try:
        service = parse_audience({"attribute": "v", "op": op, "value": value})
    except ValidationFailed:  # not a version (a leading zero): the service never holds it
        return
    assert Audience(service.source).admits({"v": actual}) is service.admits({"v": actual})


@PARITY
@given(experiment=experiments(), user=user_ids)
def test_no_attributes_are_judged_as_empty_ones(experiment: Experiment, user: str) -> None:
    compiled = CompiledExperiment.of(definition_of(experiment))
    assert (
        decide(compiled, user, None)
        == decide(compiled, user, {})
        == service_decision(experiment, user, {})
    )


@settings(max_examples=100, deadline=None)
@given(found=st.lists(experiments(), max_size=3))
def test_the_definitions_are_the_services_document_decoded(found: list[Experiment]) -> None:
    """What this test converts is what the service sends, field for field."""
    body = msgspec.json.encode(DefinitionsOut([ExperimentDefinitionOut.of(e) for e in found]))
    decoded = msgspec.json.decode(body, type=Definitions)
    assert decoded == Definitions(tuple(definition_of(e) for e in found))
