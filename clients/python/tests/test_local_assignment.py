"""Local assignment: the shared hash vectors, the audience semantics, the decision order, and
the assigner's threads (one fetch for a cold start, the last good definitions kept, each user
reported once). Nothing here times anything: the speed is bench/local_assignment.py's."""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from experiments_client import local
from experiments_client.audience import Audience, version_key
from experiments_client.definitions import (
    Decision,
    Definitions,
    ExperimentDefinition,
    Exposure,
    HoldoutDefinition,
    LayerDefinition,
    OverrideDefinition,
    VariantDefinition,
)
from experiments_client.hashing import BUCKETS, bucket
from experiments_client.local import (
    CompiledExperiment,
    DefinitionsUnavailable,
    ExperimentUnavailable,
    LocalAssigner,
    UnknownExperiment,
    decide,
)
from hypothesis import given, settings
from hypothesis import strategies as st

# Hypothesis keeps its caches out of the work tree, as the service's tests have it.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", "/tmp/experiments-hypothesis")
CASES = json.loads(
    (Path(__file__).resolve().parents[3] / "docs" / "assignment-cases.json").read_text()
)
quick = settings(database=None, deadline=None)
"""Hypothesis without an example database in the work tree, and without per-example deadlines
(the machine is shared: a slow example is no failure)."""


def experiment(
    shares: tuple[int, ...] = (5000, 5000), *, id: str = "exp-1", control: int = 0, **fields: Any
) -> ExperimentDefinition:
    """A running experiment of variants ``v0``, ``v1``, ... (ids ``{id}-v0``, ...) with these
    basis points, the one at ``control`` the control; ``fields``: more of its fields."""
    variants = tuple(
        VariantDefinition(f"{id}-v{i}", f"v{i}", share, i == control)
        for i, share in enumerate(shares)
    )
    return ExperimentDefinition(
        **{"id": id, "name": id, "status": "running", "variants": variants, **fields}
    )


def decided(
    definition: ExperimentDefinition, user: str, attributes: dict[str, Any] | None = None
) -> Decision:
    return decide(CompiledExperiment.of(definition), user, attributes)


# ------------------------------------------------------------------------ the shared vectors


@pytest.mark.parametrize("case", CASES["buckets"], ids=lambda c: repr(c["input"]))
def test_buckets(case: dict[str, Any]) -> None:
    assert bucket(case["input"]) == case["bucket"]


@pytest.mark.parametrize("case", CASES["variants"])
def test_variants(case: dict[str, Any]) -> None:
    assert bucket(f"{case['experiment_id']}:{case['user_id']}") == case["bucket"]
    d = experiment(tuple(case["basis_points"]), id=case["experiment_id"])
    answer = decided(d, case["user_id"])
    assert (answer.variant_id, answer.reason) == (d.variants[case["variant_index"]].id, "assigned")


@pytest.mark.parametrize("case", CASES["coverage"])
def test_coverage(case: dict[str, Any]) -> None:
    d = experiment(id=case["experiment_id"], coverage_basis_points=case["coverage_basis_points"])
    assert (decided(d, case["user_id"]).reason != "coverage") is case["in"]


@pytest.mark.parametrize("case", CASES["layers"])
def test_layers(case: dict[str, Any]) -> None:
    assert bucket(f"layer:{case['layer_seed']}:{case['user_id']}") == case["bucket"]
    start, end = case["slice"]
    d = experiment(layer=LayerDefinition("layer-1", case["layer_seed"], start, end))
    assert (decided(d, case["user_id"]).reason != "layer") is case["in"]


@pytest.mark.parametrize("case", CASES["holdouts"])
def test_holdouts(case: dict[str, Any]) -> None:
    d = experiment(
        holdout=HoldoutDefinition("holdout-1", case["holdout_seed"], case["basis_points"])
    )
    assert (decided(d, case["user_id"]).reason == "holdout") is case["in"]


def test_every_section_of_the_vectors_is_replayed() -> None:
    """A section added to the vectors must be replayed here too."""
    assert set(CASES) == {"description", "buckets", "variants", "coverage", "layers", "holdouts"}


# ------------------------------------------------------------------------ audiences


def admits(rule: dict[str, Any], **attributes: Any) -> bool:
    return Audience(rule).admits(attributes)


def test_comparisons() -> None:
    assert admits({"attribute": "country", "op": "eq", "value": "DE"}, country="DE")
    assert not admits({"attribute": "country", "op": "eq", "value": "DE"}, country="de")
    assert admits({"attribute": "country", "op": "ne", "value": "DE"}, country="de")
    assert admits({"attribute": "country", "op": "in", "value": ["DE", "AT"]}, country="AT")
    assert admits({"attribute": "country", "op": "not_in", "value": ["DE", "AT"]}, country="FR")
    assert not admits({"attribute": "country", "op": "not_in", "value": ["DE", "AT"]}, country="DE")
    assert admits({"attribute": "age", "op": "gte", "value": 18}, age=18)
    assert not admits({"attribute": "age", "op": "gt", "value": 18}, age=18)
    assert admits({"attribute": "age", "op": "lt", "value": 18.5}, age=18)
    assert admits({"attribute": "age", "op": "lte", "value": 18}, age=18.0)


def eq(value: Any, actual: Any) -> bool:
    return admits({"attribute": "x", "op": "eq", "value": value}, x=actual)


def member(values: list[Any], actual: Any) -> bool:
    return admits({"attribute": "x", "op": "in", "value": values}, x=actual)


def test_json_equality_of_scalars() -> None:
    assert eq(1, 1.0) and eq(1.0, 1) and eq(0, -0.0)
    assert not eq(1, "1") and not eq("1", 1)
    assert not eq(1, True) and not eq(True, 1) and not eq(0, False)
    assert eq(True, True) and eq(None, None) and not eq(None, 0) and not eq(None, "")
    assert member([1, "a"], 1.0) and member([2.5], 2.5) and member(["a", 1], "a")
    assert not member([1], True) and not member([True], 1) and not member([1], "1")
    assert member([True, None], True) and member([None], None) and not member([0], None)


def test_missing_or_mistyped_attributes_never_match_even_negations() -> None:
    for rule in (
        {"attribute": "plan", "op": "ne", "value": "free"},
        {"attribute": "plan", "op": "not_in", "value": ["free"]},
        {"attribute": "age", "op": "lt", "value": 100},
        {"attribute": "app", "op": "version_lt", "value": "9.0.0"},
    ):
        assert not admits(rule)  # missing
        assert not admits(rule, plan=["free"], age="5", app="nine")  # of another kind
        assert not admits(rule, plan={"x": 1}, age=True, app=9)
    assert admits({"not": {"attribute": "plan", "op": "eq", "value": "free"}})


def test_non_finite_numbers_are_in_no_order() -> None:
    for value in (math.nan, math.inf, -math.inf):
        for op in ("lt", "lte", "gt", "gte"):
            assert not admits({"attribute": "x", "op": op, "value": 0}, x=value)
    assert not admits({"attribute": "x", "op": "eq", "value": 1}, x=math.nan)
    assert admits({"attribute": "x", "op": "ne", "value": 1}, x=math.nan)  # present, and not 1
    assert not admits({"attribute": "x", "op": "in", "value": [1, 2]}, x=math.inf)


# SemVer 2.0.0, §11: "1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta <
# 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0."
SPEC_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "2.0.0",
    "10.0.0",
]


def test_versions_order_as_the_semver_specification_lists_them() -> None:
    ops = {
        "version_lt": int.__lt__,
        "version_lte": int.__le__,
        "version_eq": int.__eq__,
        "version_gte": int.__ge__,
        "version_gt": int.__gt__,
    }
    for i, a in enumerate(SPEC_ORDER):
        for j, b in enumerate(SPEC_ORDER):
            for op, expected in ops.items():
                rule = {"attribute": "app", "op": op, "value": b}
                assert admits(rule, app=a) is expected(i, j), (a, op, b)


@pytest.mark.parametrize(
    "text,same_as",
    [("v1.2", "1.2.0"), ("1", "1.0.0"), ("1.0.0+build.7", "1.0.0"), ("v2-rc.1", "2.0.0-rc.1")],
)
def test_short_prefixed_and_built_versions(text: str, same_as: str) -> None:
    assert admits({"attribute": "app", "op": "version_eq", "value": same_as}, app=text)
    assert admits({"attribute": "app", "op": "version_eq", "value": text}, app=same_as)


@pytest.mark.parametrize(
    "text", ["", "1.2.3.4", "01.2.3", "1.2.3-01", "1.2.3\n", "x", "1..2", "٣.1.0", "V1.2", "1.2.3-"]
)
def test_invalid_versions_match_nothing(text: str) -> None:
    assert version_key(text) is None
    for op in ("version_eq", "version_lt", "version_gte"):
        assert not admits({"attribute": "app", "op": op, "value": "1.2.3"}, app=text)


def test_a_version_longer_than_the_service_reads_is_none() -> None:
    assert version_key("1.0.0-" + "a" * 994) is not None  # 1,000 characters
    assert version_key("1.0.0-" + "a" * 995) is None


def test_combinators() -> None:
    rule = {
        "all": [
            {"attribute": "country", "op": "in", "value": ["DE", "AT"]},
            {
                "any": [
                    {"attribute": "age", "op": "gte", "value": 18},
                    {"attribute": "guardian", "op": "eq", "value": True},
                ]
            },
            {"not": {"attribute": "app", "op": "version_lt", "value": "3.0.0"}},
        ]
    }
    assert admits(rule, country="DE", age=30, app="3.1.0")
    assert admits(rule, country="AT", age=12, guardian=True, app="3.0.0")
    assert admits(rule, country="AT", age=30)  # no app: "not version_lt" holds
    assert not admits(rule, country="AT", age=12, app="3.0.0")
    assert not admits(rule, country="DE", age=30, app="2.9.9")
    assert not admits(rule, country="FR", age=30, app="3.1.0")
    assert admits({"not": {"not": {"attribute": "a", "op": "eq", "value": 1}}}, a=1)


def test_an_unknown_operator_is_a_value_error_at_compile_time() -> None:
    with pytest.raises(ValueError, match="unknown operator 'regex'"):
        Audience(
            {
                "all": [
                    {"attribute": "a", "op": "eq", "value": 1},
                    {"attribute": "b", "op": "regex", "value": "^x"},
                ]
            }
        )


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(-5, 5, allow_nan=False)
    | st.sampled_from(["a", "b", "", "1"])
)


@quick
@given(value=scalars, actual=scalars)
def test_ne_is_the_negation_of_eq_when_the_attribute_is_present(value: Any, actual: Any) -> None:
    eq = admits({"attribute": "x", "op": "eq", "value": value}, x=actual)
    ne = admits({"attribute": "x", "op": "ne", "value": value}, x=actual)
    assert eq != ne


@quick
@given(values=st.lists(scalars, min_size=1, max_size=6), actual=scalars)
def test_in_is_any_eq_and_not_in_its_negation(values: list[Any], actual: Any) -> None:
    """The sets that membership looks strings and numbers up in give what comparing each gives."""
    any_eq = any(admits({"attribute": "x", "op": "eq", "value": v}, x=actual) for v in values)
    assert admits({"attribute": "x", "op": "in", "value": values}, x=actual) is any_eq
    assert admits({"attribute": "x", "op": "not_in", "value": values}, x=actual) is not any_eq


@quick
@given(a=st.integers(-1000, 1000) | st.floats(-1e6, 1e6), b=st.integers(-1000, 1000))
def test_order_comparisons_agree_with_python(a: float, b: int) -> None:
    for op, expected in (("lt", a < b), ("lte", a <= b), ("gt", a > b), ("gte", a >= b)):
        assert admits({"attribute": "x", "op": op, "value": b}, x=a) is expected


releases = st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20))
identifiers = st.integers(0, 30).map(str) | st.from_regex(
    r"[A-Za-z-][0-9A-Za-z-]{0,3}", fullmatch=True
)


@quick
@given(a=releases, b=releases)
def test_release_versions_order_as_tuples(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    text = ".".join(map(str, a))
    for op, expected in (("version_lt", a < b), ("version_eq", a == b), ("version_gt", a > b)):
        assert (
            admits({"attribute": "v", "op": op, "value": ".".join(map(str, b))}, v=text) is expected
        )


@quick
@given(core=releases, pre=st.lists(identifiers, min_size=1, max_size=4))
def test_a_prerelease_precedes_its_release_and_follows_the_previous_patch(
    core: tuple[int, ...], pre: list[str]
) -> None:
    release = ".".join(map(str, core))
    prerelease = f"{release}-{'.'.join(pre)}"
    assert admits({"attribute": "v", "op": "version_lt", "value": release}, v=prerelease)
    assert admits(
        {"attribute": "v", "op": "version_eq", "value": prerelease}, v=prerelease + "+b.1"
    )
    if core[2] > 0:
        previous = ".".join(map(str, (*core[:2], core[2] - 1)))
        assert admits({"attribute": "v", "op": "version_gt", "value": previous}, v=prerelease)


# ------------------------------------------------------------------------ decide: the order


STATUSES = ("draft", "running", "paused", "stopped", "archived")


def test_an_override_comes_first_in_every_state_and_past_every_gate() -> None:
    gates: dict[str, Any] = {
        "audience": {"attribute": "a", "op": "eq", "value": 1},
        "coverage_basis_points": 0,
    }
    for status in STATUSES:
        d = experiment(status=status, overrides=(OverrideDefinition("qa", "exp-1-v1"),), **gates)
        answer = decided(d, "qa")
        assert (answer.variant_id, answer.variant_name, answer.in_experiment, answer.reason) == (
            "exp-1-v1",
            "v1",
            True,
            "forced",
        )
        assert decided(d, "qa-2").reason != "forced"


@pytest.mark.parametrize("status", ["draft", "paused", "archived"])
def test_an_experiment_not_started_or_paused_serves_the_control(status: str) -> None:
    d = experiment(status=status, control=1)
    for user in ("u-1", "user-42", "0"):
        answer = decided(d, user)
        assert (answer.variant_id, answer.in_experiment, answer.reason) == (
            "exp-1-v1",
            False,
            status,
        )


def test_a_stopped_experiment_serves_its_winner_else_the_control() -> None:
    stopped = experiment((3000, 3000, 4000), status="stopped", control=1)
    with_winner = experiment(
        (3000, 3000, 4000), status="stopped", control=1, winner_variant_id="exp-1-v2"
    )
    for user in ("u-1", "user-42", "0"):
        assert (decided(stopped, user).variant_id, decided(stopped, user).reason) == (
            "exp-1-v1",
            "winner",
        )
        answer = decided(with_winner, user)
        assert (answer.variant_id, answer.in_experiment, answer.reason) == (
            "exp-1-v2",
            False,
            "winner",
        )


GATED = experiment(
    control=1,
    audience={"attribute": "plan", "op": "eq", "value": "pro"},
    holdout=HoldoutDefinition("h", "hs", 2000),
    layer=LayerDefinition("l", "ls", 0, 5000),
    coverage_basis_points=5000,
)
PRO = {"plan": "pro"}


def user_where(*, held_out: bool, in_layer: bool, covered: bool) -> str:
    """The first user id ``u-0``, ``u-1``, ... with these outcomes of GATED's hashes."""
    return next(
        user
        for user in (f"u-{i}" for i in range(100_000))
        if (bucket(f"holdout:hs:{user}") < 2000) is held_out
        and (bucket(f"layer:ls:{user}") < 5000) is in_layer
        and (bucket(f"coverage:exp-1:{user}") < 5000) is covered
    )


def test_each_gate_serves_the_control_with_its_reason_in_the_services_order() -> None:
    every_gate_fails = user_where(held_out=True, in_layer=False, covered=False)
    assert decided(GATED, every_gate_fails, {"plan": "free"}).reason == "audience"
    assert decided(GATED, every_gate_fails).reason == "audience"  # no attributes: no plan
    assert decided(GATED, every_gate_fails, PRO).reason == "holdout"
    outside_the_slice = user_where(held_out=False, in_layer=False, covered=False)
    assert decided(GATED, outside_the_slice, PRO).reason == "layer"
    uncovered = user_where(held_out=False, in_layer=True, covered=False)
    assert decided(GATED, uncovered, PRO).reason == "coverage"
    for user in (every_gate_fails, outside_the_slice, uncovered):
        answer = decided(GATED, user, PRO)
        assert (answer.variant_id, answer.variant_name, answer.in_experiment) == (
            "exp-1-v1",
            "v1",
            False,
        )


def test_a_user_every_gate_admits_gets_the_variant_of_the_split() -> None:
    admitted = user_where(held_out=False, in_layer=True, covered=True)
    answer = decided(GATED, admitted, PRO)
    assert (answer.reason, answer.in_experiment) == ("assigned", True)
    assert answer == decided(experiment(control=1), admitted)


@pytest.mark.parametrize("user", ["", "x" * 257, "a\x00b"])
def test_a_bad_user_id_is_a_value_error(user: str) -> None:
    with pytest.raises(ValueError, match="user_id"):
        decided(experiment(), user)
    assert decided(experiment(), "x" * 256).reason == "assigned"


def test_a_zero_share_variant_gets_no_bucket() -> None:
    d = experiment((0, 10_000, 0))
    assert {decided(d, f"u-{i}").variant_id for i in range(500)} == {"exp-1-v1"}


shares = st.lists(st.integers(0, 10_000), min_size=1, max_size=4).map(
    lambda cuts: [b - a for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), 10_000], strict=True)]
)
user_ids = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1, max_size=40
)


@quick
@given(shares=shares, user=user_ids, low=st.integers(0, BUCKETS), high=st.integers(0, BUCKETS))
def test_raising_coverage_keeps_everyone_in_and_in_their_variant(
    shares: list[int], user: str, low: int, high: int
) -> None:
    low, high = sorted((low, high))
    before = decided(experiment(tuple(shares), coverage_basis_points=low), user)
    after = decided(experiment(tuple(shares), coverage_basis_points=high), user)
    if before.in_experiment:
        assert after == before
    assert after.reason in ("assigned", "coverage")


@quick
@given(shares=shares, user=user_ids)
def test_the_variant_is_the_one_whose_range_holds_the_bucket(shares: list[int], user: str) -> None:
    answer = decided(experiment(tuple(shares)), user)
    b = bucket(f"exp-1:{user}")
    index = int(answer.variant_id.rsplit("v", 1)[1])
    assert sum(shares[:index]) <= b < sum(shares[: index + 1])
    assert (answer.user_id, answer.experiment_id, answer.in_experiment) == (user, "exp-1", True)


def test_a_definition_that_cannot_be_decided_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="control"):
        CompiledExperiment.of(experiment(control=5))
    with pytest.raises(ValueError, match="override"):
        CompiledExperiment.of(experiment(overrides=(OverrideDefinition("qa", "nope"),)))
    with pytest.raises(ValueError, match="unknown operator"):
        CompiledExperiment.of(experiment(audience={"attribute": "a", "op": "near", "value": 1}))


# ------------------------------------------------------------------------ the assigner


class Fetches:
    """A fetch that answers from a script, one item per call (the last repeats), and records
    the ETag of every call; an exception in the script is raised."""

    def __init__(
        self,
        *script: tuple[Definitions | None, str | None] | Exception,
        delay: float = 0.0,
        gate: threading.Event | None = None,
    ) -> None:
        """``gate``: every call waits for it to be set, so a test decides when a fetch ends."""
        self.script, self.delay, self.gate = list(script), delay, gate
        self.etags: list[str | None] = []
        self._lock = threading.Lock()

    def __call__(self, etag: str | None) -> tuple[Definitions | None, str | None]:
        with self._lock:
            self.etags.append(etag)
            answer = self.script[min(len(self.etags), len(self.script)) - 1]
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.delay)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def calls(self) -> int:
        return len(self.etags)


def wait_until(condition: Callable[[], bool]) -> None:
    """Wait for something a background thread does (no limit on speed: a generous bound only
    keeps a broken test from hanging)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


ONE = Definitions((experiment(),))
TWO = Definitions((experiment(id="exp-2"), experiment(id="exp-3", status="paused")))


@pytest.fixture
def closing() -> Iterator[Callable[[LocalAssigner], LocalAssigner]]:
    """Closes each assigner the test made, so no refresher outlives its test."""
    made: list[LocalAssigner] = []

    def close_later(assigner: LocalAssigner) -> LocalAssigner:
        made.append(assigner)
        return assigner

    yield close_later
    for assigner in made:
        assigner.close()


def test_injected_definitions_need_no_fetch() -> None:
    assigner = LocalAssigner(definitions=ONE)
    assert assigner.assign("exp-1", "u-1") == decided(experiment(), "u-1")
    with pytest.raises(UnknownExperiment, match="no experiment exp-9") as raised:
        assigner.assign("exp-9", "u-1")
    assert isinstance(raised.value, KeyError)
    with pytest.raises(ValueError):
        assigner.assign("exp-1", "")


def test_set_definitions_replaces_them() -> None:
    assigner = LocalAssigner(definitions=ONE)
    assigner.set_definitions(TWO)
    assert assigner.assign("exp-3", "u-1").reason == "paused"
    with pytest.raises(UnknownExperiment):
        assigner.assign("exp-1", "u-1")


def test_without_definitions_nor_fetch_there_is_nothing_to_decide_from() -> None:
    with pytest.raises(DefinitionsUnavailable, match="no fetch"):
        LocalAssigner().assign("exp-1", "u-1")


def test_an_experiment_this_client_cannot_compile_is_unavailable_the_others_are_not() -> None:
    newer = experiment(id="exp-new", audience={"attribute": "a", "op": "matches", "value": "x"})
    assigner = LocalAssigner(definitions=Definitions((newer, experiment())))
    assert assigner.assign("exp-1", "u-1").reason == "assigned"
    with pytest.raises(ExperimentUnavailable, match="unknown operator 'matches'") as raised:
        assigner.assign("exp-new", "u-1")
    assert isinstance(raised.value, UnknownExperiment)


def test_a_cold_start_fetches_once_for_every_thread_at_once(
    closing: Callable[..., LocalAssigner],
) -> None:
    fetch = Fetches((ONE, '"1"'), delay=0.2)
    assigner = closing(LocalAssigner(fetch=fetch))
    start = threading.Barrier(32)
    answers: list[Decision] = []

    def one(i: int) -> None:
        start.wait()
        answers.append(assigner.assign("exp-1", f"u-{i}"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fetch.calls == 1
    assert sorted(answers, key=lambda a: a.user_id) == sorted(
        (decided(experiment(), f"u-{i}") for i in range(32)), key=lambda a: a.user_id
    )


def test_a_first_fetch_too_slow_or_failed_is_definitions_unavailable(
    closing: Callable[..., LocalAssigner],
) -> None:
    slow = closing(
        LocalAssigner(fetch=Fetches((ONE, None), delay=0.5), initial_timeout_seconds=0.05)
    )
    with pytest.raises(DefinitionsUnavailable, match=r"took over 0\.05s"):
        slow.assign("exp-1", "u-1")
    failing = closing(LocalAssigner(fetch=Fetches(ConnectionError("refused"))))
    with pytest.raises(DefinitionsUnavailable, match="first fetch failed") as raised:
        failing.assign("exp-1", "u-1")
    assert isinstance(raised.value.__cause__, ConnectionError)
    assert isinstance(failing.last_refresh_error, ConnectionError)


def test_a_service_down_at_start_is_used_as_soon_as_it_answers(
    closing: Callable[..., LocalAssigner],
) -> None:
    """Not a whole refresh period later: while nothing is held, the refresher retries soon."""
    fetch = Fetches(ConnectionError("refused"), (ONE, '"1"'))
    assigner = closing(LocalAssigner(fetch=fetch, refresh_seconds=3600))
    with pytest.raises(DefinitionsUnavailable):
        assigner.assign("exp-1", "u-1")
    wait_until(lambda: fetch.calls == 2)

    def answers() -> bool:
        try:
            return assigner.assign("exp-1", "u-1").reason == "assigned"
        except DefinitionsUnavailable:
            return False

    wait_until(answers)


def test_refresh_keeps_the_last_good_definitions_and_sends_the_etag() -> None:
    fetch = Fetches((ONE, '"1"'), RuntimeError("down"), (None, '"1"'), (TWO, '"2"'))
    assigner = LocalAssigner(fetch=fetch)
    assigner.close()  # no refresher ever starts: each fetch is the test's own refresh
    assert assigner.refresh() and assigner.last_refresh_error is None
    assert not assigner.refresh()
    assert isinstance(assigner.last_refresh_error, RuntimeError)
    assert assigner.assign("exp-1", "u-1").reason == "assigned"  # the last good ones
    assert assigner.refresh() and assigner.last_refresh_error is None  # 304: unchanged
    assert assigner.assign("exp-1", "u-1").reason == "assigned"
    assert assigner.refresh()
    assert assigner.assign("exp-3", "u-1").reason == "paused"
    assert fetch.etags == [None, '"1"', '"1"', '"1"']


def test_the_refresher_runs_in_the_background_until_closed(
    closing: Callable[..., LocalAssigner],
) -> None:
    fetch = Fetches((ONE, '"1"'), OSError("flaky"), (None, '"1"'))
    assigner = closing(LocalAssigner(fetch=fetch, refresh_seconds=0.01))
    assert assigner.assign("exp-1", "u-1").reason == "assigned"
    wait_until(lambda: fetch.calls >= 4)
    assert assigner.assign("exp-1", "u-1").reason == "assigned"
    assigner.close()
    calls = fetch.calls
    time.sleep(0.05)
    assert fetch.calls == calls
    assert assigner.assign("exp-1", "u-2").reason == "assigned"  # still answers, from the last


def test_injected_definitions_are_refreshed_from_the_first_use(
    closing: Callable[..., LocalAssigner],
) -> None:
    fetched = threading.Event()  # the first fetch ends only once the injected ones answered
    fetch = Fetches((TWO, '"2"'), gate=fetched)
    assigner = closing(LocalAssigner(fetch=fetch, definitions=ONE))
    assert fetch.calls == 0
    assert assigner.assign("exp-1", "u-1").reason == "assigned"  # the injected ones, at once
    fetched.set()
    wait_until(lambda: fetch.calls == 1)
    wait_until(lambda: assigner.last_refresh_error is None and _holds(assigner, "exp-2"))
    assert fetch.etags == [None]  # injected definitions carry no ETag


def _holds(assigner: LocalAssigner, experiment_id: str) -> bool:
    try:
        assigner.assign(experiment_id, "u-1")
    except UnknownExperiment:
        return False
    return True


def test_as_a_context_manager_it_starts_and_stops() -> None:
    fetch = Fetches((ONE, '"1"'))
    with LocalAssigner(fetch=fetch, refresh_seconds=0.01) as assigner:
        wait_until(lambda: fetch.calls >= 2)
    calls = fetch.calls
    time.sleep(0.05)
    assert fetch.calls == calls
    assert assigner.assign("exp-1", "u-1").reason == "assigned"


# ------------------------------------------------------------------------ reporting


RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def test_assigned_and_held_out_users_are_reported_once_each() -> None:
    holdout = HoldoutDefinition("h", "hs", 5000)
    definitions = Definitions(
        (
            experiment(),
            experiment(id="exp-2", holdout=holdout),
            experiment(id="exp-3", status="paused"),
            experiment(
                id="exp-4",
                overrides=(OverrideDefinition("qa", "exp-4-v1"),),
                coverage_basis_points=5000,
            ),
        )
    )
    reported: list[Exposure] = []
    assigner = LocalAssigner(definitions=definitions, report=reported.append)
    answers = [
        assigner.assign(x, f"u-{i}")
        for _ in range(3)
        for x in ("exp-1", "exp-2", "exp-3", "exp-4")
        for i in range(20)
    ] + [assigner.assign("exp-4", "qa")]
    stored = {
        (a.experiment_id, a.user_id): a for a in answers if a.reason in ("assigned", "holdout")
    }
    assert {a.reason for a in stored.values()} == {"assigned", "holdout"}
    assert sorted((x.experiment_id, x.user_id) for x in reported) == sorted(stored)  # once each
    for exposure in reported:
        assert exposure.variant_id == stored[exposure.experiment_id, exposure.user_id].variant_id
        assert RFC3339_UTC.fullmatch(exposure.timestamp) and exposure.attributes is None


def test_attributes_are_reported_when_the_experiment_has_an_audience() -> None:
    audience = {"attribute": "plan", "op": "eq", "value": "pro"}
    reported: list[Exposure] = []
    definitions = Definitions((experiment(audience=audience), experiment(id="exp-2")))
    assigner = LocalAssigner(definitions=definitions, report=reported.append)
    attributes = {"plan": "pro"}
    assigner.assign("exp-1", "u-1", attributes)
    assigner.assign("exp-2", "u-1", attributes)
    assigner.assign("exp-1", "u-2", {"plan": "free"})  # the audience leaves them out: not stored
    attributes["plan"] = "changed later"
    assert [(x.experiment_id, x.attributes) for x in reported] == [
        ("exp-1", {"plan": "pro"}),
        ("exp-2", None),
    ]


def test_the_oldest_reported_users_are_forgotten_past_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(local, "MAX_REPORTED", 2)
    reported: list[str] = []
    assigner = LocalAssigner(definitions=ONE, report=lambda x: reported.append(x.user_id))
    for user in ("a", "b", "c", "b", "c", "a"):
        assigner.assign("exp-1", user)
    assert reported == ["a", "b", "c", "a"]


def test_a_failed_report_keeps_the_answer_and_is_tried_again() -> None:
    attempts: list[str] = []

    def report(exposure: Exposure) -> None:
        attempts.append(exposure.user_id)
        if len(attempts) == 1:
            raise OSError("queue full")

    assigner = LocalAssigner(definitions=ONE, report=report)
    assert assigner.assign("exp-1", "u-1").reason == "assigned"
    assert isinstance(assigner.last_report_error, OSError)
    assigner.assign("exp-1", "u-1")
    assigner.assign("exp-1", "u-1")
    assert attempts == ["u-1", "u-1"]
