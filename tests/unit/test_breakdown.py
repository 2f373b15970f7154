"""Breakdowns' pure parts: an attribute's value as a slice's name, the slices shown (the 50 with
the most users, other, unknown), and that they add up to the experiment, whatever the totals."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from domain.analysis import Analysis, Correction
from domain.breakdown import BreakdownTotals, SliceCell, SliceKind, breakdown, slices_of
from domain.dimensions import dimension_values, value_text
from domain.results import ResultCalculator, ResultQuery
from domain.totals import EventTotals
from tests.factories import an_experiment


def test_values_are_named_as_documented() -> None:
    assert [value_text(v) for v in ("ios", True, False, 3.0, 3, 2.5, -0.0, None)] == [
        "ios", "true", "false", "3", "3", "2.5", "0", None,
    ]
    assert value_text("x" * 300) == "x" * 200
    assert value_text(1e300) == "1e+300"
    assert dimension_values(("platform", "country", "tier"), {"platform": "ios", "tier": None, "age": 3}) == (
        ("platform", "ios"),
    )
    assert dimension_values((), {"platform": "ios"}) == ()


def cell(users: int, converters: int = 0, value: float = 0.0) -> SliceCell:
    return SliceCell(users, EventTotals(converters, converters, value, value * value, converters))


def test_the_most_users_first_then_other_then_unknown() -> None:
    by_value = {f"v{i:02d}": {"a": cell(i + 1, i // 2), "b": cell(i, i // 3)} for i in range(55)}
    overall = {"a": cell(2000, 100), "b": cell(1900, 90)}
    shown = slices_of(BreakdownTotals(overall, by_value), ["a", "b"], limit=50)
    assert [s.kind for s in shown] == [SliceKind.VALUE] * 50 + [SliceKind.OTHER, SliceKind.UNKNOWN]
    assert [s.value for s in shown[:50]] == [f"v{i:02d}" for i in range(54, 4, -1)]
    assert shown[50].values == 5 and shown[50].users == sum(2 * i + 1 for i in range(5))
    assert sum(s.users for s in shown) == 3900


def test_no_unknown_slice_when_every_user_has_a_value() -> None:
    shown = slices_of(BreakdownTotals({"a": cell(3, 1)}, {"x": {"a": cell(3, 1)}}), ["a"])
    assert [s.kind for s in shown] == [SliceKind.VALUE]


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)), max_size=70),
       st.integers(0, 30))
def test_the_slices_add_up_to_the_experiment(rows: list[tuple[int, int, int]], unknown: int) -> None:
    by_value = {f"v{i}": {"a": cell(n, min(c, n), float(c)), "b": cell(m, 0)} for i, (n, c, m) in enumerate(rows)}
    overall = {
        "a": cell(sum(n for n, _, _ in rows) + unknown, sum(min(c, n) for n, c, _ in rows), float(sum(c for _, c, _ in rows))),
        "b": cell(sum(m for _, _, m in rows)),
    }
    overall["a"] = SliceCell(overall["a"].users, EventTotals(
        overall["a"].primary.events, overall["a"].primary.users, overall["a"].primary.value_sum,
        sum(float(c) ** 2 for _, c, _ in rows), overall["a"].primary.events_sum_squares))
    shown = slices_of(BreakdownTotals(overall, by_value), ["a", "b"])
    assert len([s for s in shown if s.kind is SliceKind.VALUE]) <= 50
    for v in ("a", "b"):
        assert sum(s.cells[v].users for s in shown) == overall[v].users
        assert sum(s.cells[v].primary.users for s in shown) == overall[v].primary.users
        assert all(s.cells[v].primary.value_sum_squares >= 0 for s in shown)
    assert all(s.users > 0 for s in shown)


def test_the_correction_runs_over_every_slice_and_variant() -> None:
    exp = an_experiment("three", (34, 33, 33), primary="buy")
    a, b, c = (v.id for v in exp.variants)
    by_value = {
        "x": {a: cell(1000, 100), b: cell(1000, 130), c: cell(1000, 90)},
        "y": {a: cell(500, 40), b: cell(500, 41), c: cell(500, 70)},
    }
    overall = {v: by_value["x"][v] + by_value["y"][v] for v in (a, b, c)}
    query = ResultQuery.resolve(exp)
    for correction, method in ((Correction.HOLM, "holm"), (Correction.BH, "fdr_bh")):
        got = breakdown(exp, "platform", query, BreakdownTotals(overall, by_value),
                        Analysis(correction=correction), ResultCalculator())
        raw = [cmp.conversion.p_value for s in got.slices for cmp in s.results.comparisons]
        assert len(raw) == 4
        expected = iter(multipletests(raw, method=method)[1])
        for s in got.slices:
            for cmp in s.results.comparisons:
                assert abs(s.p_values_adjusted[cmp.variant_id] - next(expected)) < 1e-12
