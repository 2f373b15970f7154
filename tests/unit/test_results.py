"""ResultCalculator over hand-made aggregates, and how a results query resolves its filters."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, date, datetime

import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from domain.errors import ValidationFailed
from domain.results import ResultCalculator, ResultQuery
from domain.totals import EventTotals, VariantAggregate
from tests.factories import an_experiment


def agg(variant_id: str, users: int, converters: int, value_sum: float = 0.0, sq: float = 0.0):
    return VariantAggregate(
        variant_id=variant_id, users=users, unique_users_with_events=converters,
        event_counts={"buy": converters, "view": converters},
        primary=EventTotals(converters, converters, value_sum, sq),
    )


def test_rates_lifts_and_the_z_test() -> None:
    exp = an_experiment()
    c, t = exp.variants
    results = ResultCalculator().compute(
        exp, ResultQuery(primary_event_type="buy"), {c.id: agg(c.id, 10_000, 800), t.id: agg(t.id, 10_000, 920)}
    )
    control, treated = results.variants
    assert (control.primary_conversion_rate, treated.primary_conversion_rate) == (0.08, 0.092)
    (comparison,) = results.comparisons
    conversion = comparison.conversion
    assert conversion.absolute_lift == pytest.approx(0.012, rel=1e-12)
    assert conversion.relative_lift == pytest.approx(0.15, rel=1e-12)
    z, p = proportions_ztest([920, 800], [10_000, 10_000])
    assert conversion.statistic == pytest.approx(z, rel=1e-9)
    assert conversion.p_value == pytest.approx(p, rel=1e-9)
    assert comparison.p_value_adjusted == conversion.p_value
    assert conversion.significant is True
    assert conversion.interval.lower < 0.012 < conversion.interval.upper
    assert (results.total_users, results.total_events) == (20_000, 3_440)


def test_narrowing_to_a_variant_keeps_srm_and_holm_over_the_whole_experiment() -> None:
    exp = an_experiment(shares=(40, 30, 30))
    c, a, b = exp.variants
    aggregates = {c.id: agg(c.id, 4000, 400), a.id: agg(a.id, 3000, 360), b.id: agg(b.id, 3100, 300)}
    whole = ResultCalculator().compute(exp, ResultQuery(primary_event_type="buy"), aggregates)
    narrow = ResultCalculator().compute(exp, ResultQuery(variant_id=b.id, primary_event_type="buy"), aggregates)
    assert [v.variant.id for v in narrow.variants] == [b.id]
    assert [x.variant_id for x in narrow.comparisons] == [b.id]
    assert narrow.srm == whole.srm
    assert narrow.comparisons[0] == whole.comparisons[1]
    holm = multipletests([x.conversion.p_value for x in whole.comparisons], method="holm")[1]
    assert [x.p_value_adjusted for x in whole.comparisons] == pytest.approx(list(holm), rel=1e-12)
    assert narrow.total_users == 3100


def test_the_control_alone_has_no_comparison() -> None:
    exp = an_experiment()
    c, t = exp.variants
    results = ResultCalculator().compute(exp, ResultQuery(variant_id=c.id), {c.id: agg(c.id, 10, 1)})
    assert results.comparisons == []


def test_empty_arms_give_nulls_never_nan() -> None:
    exp = an_experiment()
    results = ResultCalculator().compute(exp, ResultQuery(), {})
    (comparison,) = results.comparisons
    assert results.variants[0].primary_conversion_rate is None
    assert results.variants[0].value_per_user is None
    conversion = comparison.conversion
    for value in (conversion.absolute_lift, conversion.relative_lift, conversion.statistic,
                  conversion.p_value, comparison.p_value_adjusted, conversion.interval):
        assert value is None
    assert conversion.significant is False
    assert results.srm.chi_square is None and results.srm.mismatch is False


def test_all_converted_in_both_arms_has_no_z_but_an_interval() -> None:
    exp = an_experiment()
    c, t = exp.variants
    results = ResultCalculator().compute(exp, ResultQuery(), {c.id: agg(c.id, 50, 50), t.id: agg(t.id, 60, 60)})
    conversion = results.comparisons[0].conversion
    assert conversion.absolute_lift == 0.0
    assert conversion.statistic is None and conversion.p_value is None and not conversion.significant
    assert conversion.interval is not None and math.isfinite(conversion.interval.lower)


def test_zero_control_rate_has_no_relative_lift() -> None:
    exp = an_experiment()
    c, t = exp.variants
    results = ResultCalculator().compute(exp, ResultQuery(), {c.id: agg(c.id, 100, 0), t.id: agg(t.id, 100, 5)})
    assert results.comparisons[0].conversion.relative_lift is None
    assert results.comparisons[0].conversion.absolute_lift == 0.05


def test_users_in_a_zero_percent_variant_are_a_mismatch() -> None:
    exp = an_experiment(shares=(50, 50, 0))
    c, t, off = exp.variants
    results = ResultCalculator().compute(
        exp, ResultQuery(), {c.id: agg(c.id, 500, 5), t.id: agg(t.id, 500, 5), off.id: agg(off.id, 1, 0)}
    )
    assert results.srm.mismatch is True


def test_a_bare_date_covers_its_whole_utc_day() -> None:
    exp = an_experiment()
    q = ResultQuery.resolve(exp, start=date(2026, 3, 1), end=date(2026, 3, 2))
    assert q.start == datetime(2026, 3, 1, tzinfo=UTC)
    assert q.end == datetime(2026, 3, 2, 23, 59, 59, 999999, tzinfo=UTC)


def test_datetimes_without_offset_are_utc_and_offsets_convert() -> None:
    from datetime import timedelta, timezone

    exp = an_experiment()
    q = ResultQuery.resolve(
        exp,
        start=datetime(2026, 3, 1, 10, 0),
        end=datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
    )
    assert q.start == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert q.end == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("primary_param", "experiment_primary", "event_type", "expected"),
    [("p", "e", "f", "p"), (None, "e", "f", "e"), (None, None, "f", "f"), (None, None, None, None)],
)
def test_primary_event_type_defaults(primary_param, experiment_primary, event_type, expected) -> None:
    exp = an_experiment(primary=experiment_primary)
    q = ResultQuery.resolve(exp, primary_event_type=primary_param, event_type=event_type)
    assert q.primary_event_type == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"variant_id": "nope"},
        {"start": date(2026, 3, 2), "end": date(2026, 3, 1)},
        {"event_type": ""},
    ],
)
def test_bad_filters_are_refused(kwargs) -> None:
    with pytest.raises(ValidationFailed):
        ResultQuery.resolve(an_experiment(), **kwargs)


def test_value_per_user_is_compared_by_welch_counting_users_without_a_purchase_as_zero() -> None:
    exp = an_experiment()
    c, t = exp.variants
    control = [0.0] * 6 + [10.0, 25.5, 3.0, 12.0]
    variant = [0.0] * 3 + [40.0, 8.0, 19.99, 7.5, 30.0]
    aggregates = {
        v.id: agg(v.id, len(values), sum(1 for x in values if x), sum(values), sum(x * x for x in values))
        for v, values in ((c, control), (t, variant))
    }
    results = ResultCalculator().compute(exp, ResultQuery(primary_event_type="buy"), aggregates)
    value = results.comparisons[0].value
    ref = stats.ttest_ind(variant, control, equal_var=False)
    assert value.statistic == pytest.approx(float(ref.statistic), rel=1e-9)
    assert value.p_value == pytest.approx(float(ref.pvalue), rel=1e-9)
    assert value.absolute_lift == pytest.approx(statistics.fmean(variant) - statistics.fmean(control), rel=1e-12)
    assert results.variants[0].value_per_user == pytest.approx(statistics.fmean(control), rel=1e-12)
