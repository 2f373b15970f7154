"""Audience rules: validation names every fault; evaluation follows the documented semantics,
checked against a published ordering (the SemVer 2.0.0 specification's own example)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import ValidationFailed
from domain.targeting import MAX_DEPTH, Version, parse_audience


def admits(rule: dict, **attributes) -> bool:  # noqa: ANN003
    return parse_audience(rule).admits(attributes)


def faults(rule) -> set[str]:  # noqa: ANN001
    with pytest.raises(ValidationFailed) as raised:
        parse_audience(rule)
    return {e.field for e in raised.value.errors}


# SemVer 2.0.0, §11: "Example: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta <
# 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0."
SPEC_ORDER = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
              "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0"]


def test_versions_order_as_the_semver_specification_lists_them() -> None:
    parsed = [Version.parse(v) for v in SPEC_ORDER]
    for i, a in enumerate(parsed):
        for j, b in enumerate(parsed):
            assert a.compare(b) == (i > j) - (i < j), (SPEC_ORDER[i], SPEC_ORDER[j])


@pytest.mark.parametrize("text,same_as", [("v1.2", "1.2.0"), ("1", "1.0.0"), ("1.0.0+build.7", "1.0.0")])
def test_short_and_prefixed_versions(text: str, same_as: str) -> None:
    assert Version.parse(text).compare(Version.parse(same_as)) == 0


@pytest.mark.parametrize("text", ["", "1.2.3.4", "01.2.3", "1.2.3-01", "1.2.3\n", "x", "1..2", "٣.1.0"])
def test_invalid_versions(text: str) -> None:
    assert Version.parse(text) is None


def test_comparisons() -> None:
    assert admits({"attribute": "country", "op": "eq", "value": "DE"}, country="DE")
    assert not admits({"attribute": "country", "op": "eq", "value": "DE"}, country="de")
    assert admits({"attribute": "country", "op": "in", "value": ["DE", "AT"]}, country="AT")
    assert admits({"attribute": "country", "op": "not_in", "value": ["DE", "AT"]}, country="FR")
    assert admits({"attribute": "age", "op": "gte", "value": 18}, age=18)
    assert not admits({"attribute": "age", "op": "gt", "value": 18}, age=18)
    assert admits({"attribute": "age", "op": "lt", "value": 18.5}, age=18)
    assert admits({"attribute": "app", "op": "version_gte", "value": "2.10.0"}, app="2.10.0")
    assert admits({"attribute": "app", "op": "version_gt", "value": "2.9.0"}, app="2.10.0")  # not text order
    assert not admits({"attribute": "app", "op": "version_gte", "value": "2.0.0"}, app="2.0.0-rc.1")


def test_json_equality_of_scalars() -> None:
    assert admits({"attribute": "n", "op": "eq", "value": 1}, n=1.0)
    assert not admits({"attribute": "n", "op": "eq", "value": 1}, n="1")
    assert not admits({"attribute": "n", "op": "eq", "value": 1}, n=True)
    assert not admits({"attribute": "b", "op": "eq", "value": True}, b=1)
    assert admits({"attribute": "b", "op": "eq", "value": None}, b=None)
    assert not admits({"attribute": "age", "op": "gt", "value": 1}, age=True)  # a bool is no number


def test_missing_or_mistyped_attributes_never_match_even_negations() -> None:
    for rule in (
        {"attribute": "plan", "op": "ne", "value": "free"},
        {"attribute": "plan", "op": "not_in", "value": ["free"]},
        {"attribute": "age", "op": "lt", "value": 100},
        {"attribute": "app", "op": "version_lt", "value": "9.0.0"},
    ):
        assert not admits(rule)  # missing
        assert not admits(rule, plan=["free"], age="5", app="nine")  # of another kind
    assert admits({"not": {"attribute": "plan", "op": "eq", "value": "free"}})


def test_combinators() -> None:
    rule = {"all": [
        {"attribute": "country", "op": "in", "value": ["DE", "AT"]},
        {"any": [{"attribute": "age", "op": "gte", "value": 18}, {"attribute": "guardian", "op": "eq", "value": True}]},
        {"not": {"attribute": "app", "op": "version_lt", "value": "3.0.0"}},
    ]}
    assert admits(rule, country="DE", age=30, app="3.1.0")
    assert admits(rule, country="AT", age=12, guardian=True, app="3.0.0")
    assert not admits(rule, country="AT", age=12, app="3.0.0")
    assert not admits(rule, country="DE", age=30, app="2.9.9")


def test_every_fault_is_named_by_its_path() -> None:
    rule = {"all": [
        {"attribute": "", "op": "eq", "value": 1},
        {"attribute": "a", "op": "like", "value": 1},
        {"attribute": "a", "op": "gt", "value": "5"},
        {"attribute": "a", "op": "in", "value": []},
        {"attribute": "a", "op": "version_gt", "value": "one"},
        {"attribute": "a", "op": "eq"},
        {"attribute": "a", "op": "in", "value": [1, {"x": 1}]},
        {"any": []},
        {"not": "x"},
        {"attribute": "a", "op": "eq", "value": 1, "vaule": 2},
        {"all": [{"attribute": "a", "op": "eq", "value": 1}], "any": []},
    ]}
    assert faults(rule) == {
        "audience.all[0].attribute", "audience.all[1].op", "audience.all[2].value", "audience.all[3].value",
        "audience.all[4].value", "audience.all[5].value", "audience.all[6].value[1]", "audience.all[7].any",
        "audience.all[8].not", "audience.all[9].vaule", "audience.all[10].any",
    }
    assert faults([1]) == {"audience"}
    assert faults({"attribute": "a", "op": "gt", "value": float("inf")}) == {"audience.value"}


def test_depth_and_size_are_bounded() -> None:
    rule: dict = {"attribute": "a", "op": "eq", "value": 1}
    for _ in range(MAX_DEPTH):
        rule = {"not": rule}
    assert faults(rule)  # one level too deep
    wide = {"any": [{"attribute": "a", "op": "eq", "value": i} for i in range(300)]}
    assert faults(wide) == {"audience"}


scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-5, 5, allow_nan=False) | st.sampled_from(["a", "b", ""])


@given(value=scalars, actual=scalars)
def test_ne_is_the_negation_of_eq_when_the_attribute_is_present(value, actual) -> None:  # noqa: ANN001
    eq = admits({"attribute": "x", "op": "eq", "value": value}, x=actual)
    ne = admits({"attribute": "x", "op": "ne", "value": value}, x=actual)
    assert eq != ne


@given(a=st.integers(-1000, 1000), b=st.integers(-1000, 1000))
def test_order_comparisons_agree_with_python(a: int, b: int) -> None:
    for op, expected in (("lt", a < b), ("lte", a <= b), ("gt", a > b), ("gte", a >= b)):
        assert admits({"attribute": "x", "op": op, "value": b}, x=a) is expected


versions = st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20))


@given(a=versions, b=versions)
def test_release_versions_order_as_tuples(a, b) -> None:  # noqa: ANN001
    text = lambda v: ".".join(map(str, v))  # noqa: E731
    assert Version.parse(text(a)).compare(Version.parse(text(b))) == (a > b) - (a < b)
