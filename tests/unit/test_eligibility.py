"""Coverage, layers, holdouts and the lifecycle, as pure functions: the invariants that make
ramping safe (hypothesis), the shares they give (checked against binomial bounds from scipy),
and the shared vectors any client library can run (docs/assignment-cases.json)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from domain.eligibility import Gate, Holdout, Reason, Slice, covered, free_slice, layer_bucket
from domain.experiment import BUCKETS, Experiment, bucket_of
from domain.lifecycle import MOVES, IllegalMove, Status, move
from domain.targeting import parse_audience
from tests.factories import an_experiment

CASES = Path(__file__).resolve().parents[2] / "docs" / "assignment-cases.json"


def reference_bucket(text: str) -> int:
    """The documented hash, written out again here rather than imported."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % 10_000


def experiment(shares=(50, 50)) -> Experiment:  # noqa: ANN001
    """Its ids fixed (``x000001``, ...): the shares counted below come from their hashes."""
    return an_experiment("e", shares, primary=None, ids="x")


user_ids = st.text(min_size=1, max_size=40)
coverages = st.integers(0, BUCKETS)


@given(user=user_ids, ramp=st.lists(coverages, min_size=1, max_size=8).map(sorted))
def test_raising_coverage_keeps_everyone_in_and_never_changes_a_variant(user: str, ramp: list[int]) -> None:
    exp = experiment((30, 30, 40))
    seen_in = False
    for coverage in ramp:
        now_in = covered(exp.id, user, coverage)
        assert now_in or not seen_in, "a user covered before was dropped by a higher coverage"
        seen_in = now_in
        # The variant never depends on the coverage: whoever enters, at any step, gets the
        # variant the original hash gives, the one they would have had at 100%.
        assert exp.variant_for_user(user) == exp.variants[_variant_index(exp, user)]


def _variant_index(exp: Experiment, user: str) -> int:
    b, end = reference_bucket(f"{exp.id}:{user}"), 0
    for i, v in enumerate(exp.variants):
        end += v.traffic_basis_points
        if b < end:
            return i
    raise AssertionError


def test_coverage_admits_its_share_independently_of_the_variant() -> None:
    """At 20% coverage of a 50/50 split, about 20% of each variant's users are admitted: a
    coverage read off the variant's own bucket would admit the control's users only."""
    exp = experiment((50, 50))
    n = 40_000
    admitted = {v.id: 0 for v in exp.variants}
    per_variant = {v.id: 0 for v in exp.variants}
    for i in range(n):
        variant = exp.variant_for_user(f"u{i}").id
        per_variant[variant] += 1
        admitted[variant] += covered(exp.id, f"u{i}", 2000)
    for variant in exp.variants:
        low, high = stats.binom.interval(0.9999, per_variant[variant.id], 0.2)
        assert low <= admitted[variant.id] <= high, (variant.name, admitted, per_variant)


def _gaps(taken: list[Slice]) -> list[int]:
    edges = [0] + [x for s in sorted(taken, key=lambda s: s.start) for x in (s.start, s.end)] + [BUCKETS]
    return [edges[i + 1] - edges[i] for i in range(0, len(edges), 2)]


@given(st.lists(st.tuples(st.integers(1, 4000), st.booleans()), min_size=1, max_size=10))
def test_free_slices_never_overlap_and_are_found_whenever_a_gap_fits(steps: list[tuple[int, bool]]) -> None:
    taken: list[Slice] = []
    for size, release_first in steps:
        if release_first and taken:  # an experiment archived: its slice is free again
            taken.pop(0)
        found = free_slice(taken, size)
        if found is None:
            assert max(_gaps(taken)) < size
        else:
            assert found.size == size and all(not found.overlaps(t) for t in taken)
            taken.append(found)


def test_experiments_of_one_layer_never_share_a_user() -> None:
    seed = "layer-seed"
    slices = [Slice(0, 3000), Slice(3000, 3500), Slice(3500, 10_000)]
    for i in range(5000):
        owners = [s for s in slices if s.holds(layer_bucket(seed, f"u{i}"))]
        assert len(owners) == 1


def test_the_layer_hash_is_independent_of_the_experiments_hash() -> None:
    exp = experiment((50, 50))
    gate = Gate(exp.id, layer_seed="s", slice=Slice(0, 5000))
    both = [(exp.variant_for_user(f"u{i}").name, gate.exclusion(f"u{i}", {}) is None) for i in range(20_000)]
    table = [[sum(1 for v, inside in both if v == name and inside is flag) for flag in (True, False)] for name in ("v0", "v1")]
    assert stats.chi2_contingency(table).pvalue > 1e-4, table


def test_holdout_keeps_its_share_out() -> None:
    holdout = Holdout("h", 500)  # 5%
    held = sum(holdout.holds(f"u{i}") for i in range(40_000))
    low, high = stats.binom.interval(0.9999, 40_000, 0.05)
    assert low <= held <= high


def test_exclusions_come_in_a_fixed_order() -> None:
    audience = parse_audience({"attribute": "country", "op": "eq", "value": "DE"})
    holdout = Holdout("h", BUCKETS)  # everyone held out
    gate = Gate("x", coverage_basis_points=0, audience=audience, holdout=holdout, layer_seed="s", slice=Slice(0, 0))
    assert gate.exclusion("u", {"country": "FR"}) is Reason.AUDIENCE
    assert gate.exclusion("u", {"country": "DE"}) is Reason.HOLDOUT
    gate = Gate("x", coverage_basis_points=0, layer_seed="s", slice=Slice(0, 0))
    assert gate.exclusion("u", {}) is Reason.LAYER
    assert Gate("x", coverage_basis_points=0).exclusion("u", {}) is Reason.COVERAGE
    assert Gate("x").exclusion("u", {}) is None


def test_lifecycle_moves() -> None:
    allowed = {(a, b) for a, targets in MOVES.items() for b in targets}
    assert allowed == {
        (Status.DRAFT, Status.RUNNING), (Status.DRAFT, Status.ARCHIVED),
        (Status.RUNNING, Status.PAUSED), (Status.RUNNING, Status.STOPPED),
        (Status.PAUSED, Status.RUNNING), (Status.PAUSED, Status.STOPPED),
        (Status.STOPPED, Status.ARCHIVED),
    }
    for a in Status:
        assert move(a, a) is a
        for b in Status:
            if a != b and (a, b) not in allowed:
                with pytest.raises(IllegalMove) as raised:
                    move(a, b)
                assert f"is {a.value}" in str(raised.value)


def test_the_shared_vectors() -> None:
    """docs/assignment-cases.json: inputs and expected buckets, for any client library. Each
    expectation is checked against an independent implementation of the documented hash (the
    README's words, written out here) and against the domain's functions."""
    cases = json.loads(CASES.read_text())
    assert cases["buckets"] and cases["variants"] and cases["coverage"] and cases["layers"] and cases["holdouts"]
    for case in cases["buckets"]:
        assert reference_bucket(case["input"]) == case["bucket"], case
    for case in cases["variants"]:
        assert reference_bucket(f"{case['experiment_id']}:{case['user_id']}") == case["bucket"], case
        assert bucket_of(case["experiment_id"], case["user_id"]) == case["bucket"], case
        ends, end = [], 0
        for share in case["basis_points"]:
            end += share
            ends.append(end)
        assert next(i for i, e in enumerate(ends) if case["bucket"] < e) == case["variant_index"], case
    for case in cases["coverage"]:
        b = reference_bucket(f"coverage:{case['experiment_id']}:{case['user_id']}")
        assert (b < case["coverage_basis_points"]) is case["in"], case
        assert covered(case["experiment_id"], case["user_id"], case["coverage_basis_points"]) is case["in"], case
    for case in cases["layers"]:
        b = reference_bucket(f"layer:{case['layer_seed']}:{case['user_id']}")
        start, end = case["slice"]
        assert b == case["bucket"] and (start <= b < end) is case["in"], case
        s = Slice(*case["slice"])
        assert s.holds(layer_bucket(case["layer_seed"], case["user_id"])) is case["in"], case
    for case in cases["holdouts"]:
        b = reference_bucket(f"holdout:{case['holdout_seed']}:{case['user_id']}")
        assert (b < case["basis_points"]) is case["in"], case
        assert Holdout(case["holdout_seed"], case["basis_points"]).holds(case["user_id"]) is case["in"], case
