"""Results: a scenario, and every number of it against an independent computation written here from
the contract's words (and scipy / statsmodels for the statistics), never against the service's
own code. End to end, through the real app in-process (routes, auth, DI container, SQLite
migrated by Alembic, a clock the tests move), against the contract (../shared/API.md)."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from litestar.testing import TestClient
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep

from tests.e2e.helpers import (
    T0,
    assert_problem,
    assign,
    event,
    expected_variant,
    iso,
    parse_ts,
    results,
)
from tests.factories import create_experiment
from tests.fakes import FakeClock, SequentialIds

# ---------------------------------------------------------------------------------------------
# results: a scenario, and an independent computation of every number


@dataclass(frozen=True)
class Ev:
    experiment_id: str
    user_id: str
    event_type: str
    ts: datetime
    value: float | None = None


@dataclass
class Scenario:
    client: TestClient
    three_arms: dict  # primary_event_type "purchase"; control 40 / b 30 / c 30
    no_primary: dict  # no primary_event_type; ctl 50 / alt 50
    assignments: dict[str, dict[str, tuple[str, datetime]]] = field(default_factory=dict)
    events: list[Ev] = field(default_factory=list)
    users: list[str] = field(default_factory=list)


def _payload(e: Ev) -> dict:
    body: dict[str, Any] = event(e.experiment_id, e.user_id, e.event_type, timestamp=iso(e.ts))
    if e.value is not None:
        body["value"] = e.value
    return body


@pytest.fixture
def scenario(make_client: Callable[..., TestClient], database_url: str, fake_clock: FakeClock) -> Scenario:
    """Two experiments, users assigned at known times over three days, and events before, at and
    after their assignments, of users never assigned, of several types, with and without values.

    Ids are sequential so that the users' buckets, and so the whole scenario, are the same on
    every run (the random choices below are seeded)."""
    client = make_client(database_url, fake_clock, SequentialIds("exp"))
    sc = Scenario(
        client=client,
        three_arms=create_experiment(client, "three-arms", [("control", 40), ("b", 30), ("c", 30)], "purchase"),
        no_primary=create_experiment(client, "no-primary", [("ctl", 50), ("alt", 50)]),
    )
    e1, e2 = sc.three_arms["id"], sc.no_primary["id"]
    sc.assignments = {e1: {}, e2: {}}
    rng = random.Random(20261128)
    wanted = dict(zip((v["id"] for v in sc.three_arms["variants"]), (9, 8, 7), strict=True))
    i = 0
    while any(wanted.values()):
        user_id = f"user-{i}"
        variant_id = expected_variant(sc.three_arms, user_id)["id"]
        if wanted[variant_id]:
            wanted[variant_id] -= 1
            sc.users.append(user_id)
        i += 1
    rng.shuffle(sc.users)

    def assign_now(experiment: dict, user_id: str) -> None:
        body = assign(client, experiment["id"], user_id).json()
        assert body["variant_id"] == expected_variant(experiment, user_id)["id"]
        assert parse_ts(body["assigned_at"]) == fake_clock.now()
        sc.assignments[experiment["id"]][user_id] = (body["variant_id"], fake_clock.now())

    for k, user_id in enumerate(sc.users):
        assign_now(sc.three_arms, user_id)
        if k % 3:
            fake_clock.advance(minutes=20)
            assign_now(sc.no_primary, user_id)
        fake_clock.advance(minutes=97)
    assign_now(sc.no_primary, "only-in-no-primary")
    fake_clock.advance(minutes=1)

    def activity(experiment_id: str, user_id: str, at: datetime) -> None:
        add = sc.events.append
        add(Ev(experiment_id, user_id, "view", at - timedelta(seconds=1)))  # before: never counted
        add(Ev(experiment_id, user_id, "view", at))  # exactly at: counted
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            when = at + timedelta(minutes=rng.randint(0, 3_000), microseconds=rng.randint(0, 999_999))
            add(Ev(experiment_id, user_id, "purchase", when, rng.choice([None, 9.99, 20.0, 0.5, 125.25])))
        if rng.random() < 0.5:
            add(Ev(experiment_id, user_id, "signup", at + timedelta(minutes=rng.randint(1, 900))))
        if rng.random() < 0.3:
            add(Ev(experiment_id, user_id, "purchase", at - timedelta(microseconds=1), 1000.0))  # before

    for user_id in sc.users:
        for experiment in (sc.three_arms, sc.no_primary):
            assigned = sc.assignments[experiment["id"]].get(user_id)
            if assigned is not None:
                activity(experiment["id"], user_id, assigned[1])
            else:  # events of a user not assigned in this experiment: stored, never counted
                activity(experiment["id"], user_id, T0 + timedelta(hours=rng.randint(0, 60)))
    for g in range(5):  # users never assigned anywhere
        for experiment in (sc.three_arms, sc.no_primary):
            activity(experiment["id"], f"ghost-{g}", T0 + timedelta(hours=7 * g))
    activity(e1, "only-in-no-primary", T0 + timedelta(hours=30))
    activity(e2, "only-in-no-primary", sc.assignments[e2]["only-in-no-primary"][1])

    payloads = [_payload(e) for e in sc.events]
    rng.shuffle(payloads)
    half = len(payloads) // 2
    for chunk in (payloads[:half], payloads[half:]):
        response = client.post("/events", json={"events": chunk})
        assert response.json() == {"accepted": len(chunk), "duplicates": 0}
    return sc


def _pooled_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float | None, float | None]:
    if n1 == 0 or n2 == 0:
        return None, None
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance == 0:
        return None, None
    z = (x2 / n2 - x1 / n1) / math.sqrt(variance)
    return z, 2 * stats.norm.sf(abs(z))


def _newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float | None, float | None]:
    if n1 == 0 or n2 == 0:
        return None, None
    # statsmodels' "newcomb" is Newcombe's hybrid score (method 10) for count1/nobs1 - count2/nobs2.
    lower, upper = confint_proportions_2indep(x2, n2, x1, n1, method="newcomb", compare="diff")
    return float(lower), float(upper)


def _welch(control: list[float], variant: list[float]) -> dict:
    out: dict[str, Any] = {
        "absolute_lift": None, "relative_lift": None, "t_statistic": None, "p_value": None,
        "significant": False,
        "confidence_interval": {"level": 0.95, "method": "welch", "lower": None, "upper": None},
    }
    if not control or not variant:
        return out
    m1, m2 = statistics.fmean(control), statistics.fmean(variant)
    out["absolute_lift"] = m2 - m1
    out["relative_lift"] = (m2 - m1) / m1 if m1 else None
    if len(control) < 2 or len(variant) < 2:
        return out
    if statistics.variance(control) == 0 and statistics.variance(variant) == 0:
        return out
    test = stats.ttest_ind(variant, control, equal_var=False)
    interval = test.confidence_interval(0.95)
    out.update(t_statistic=float(test.statistic), p_value=float(test.pvalue), significant=bool(test.pvalue < 0.05))
    out["confidence_interval"].update(lower=float(interval.low), upper=float(interval.high))
    return out


def expected_results(
    sc: Scenario,
    experiment: dict,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    event_type: str | None = None,
    variant_id: str | None = None,
    primary: str | None = None,
) -> dict:
    """The contract's counting rule and statistics, computed from the raw scenario."""
    eid = experiment["id"]
    assigned = sc.assignments[eid]
    primary_type = primary or experiment["primary_event_type"] or event_type
    counted = [
        e
        for e in sc.events
        if e.experiment_id == eid
        and e.user_id in assigned
        and e.ts >= assigned[e.user_id][1]
        and (start is None or e.ts >= start)
        and (end is None or e.ts <= end)
    ]
    rows, totals = {}, {}
    for v in experiment["variants"]:
        users = [u for u, (vid, at) in assigned.items() if vid == v["id"] and (end is None or at <= end)]
        mine = [e for e in counted if assigned[e.user_id][0] == v["id"]]
        shown = [e for e in mine if event_type is None or e.event_type == event_type]
        prim = [e for e in mine if primary_type is None or e.event_type == primary_type]
        per_user = dict.fromkeys(users, 0.0)
        for e in prim:
            per_user[e.user_id] += e.value or 0.0  # KeyError: an event counted for an uncounted user
        totals[v["id"]] = list(per_user.values())
        value_sum = math.fsum(e.value or 0.0 for e in prim)
        converters = len({e.user_id for e in prim})
        rows[v["id"]] = {
            "variant_id": v["id"],
            "variant_name": v["name"],
            "is_control": v["is_control"],
            "users": len(users),
            "events": len(shown),
            "unique_users_with_events": len({e.user_id for e in shown}),
            "event_counts": dict(Counter(e.event_type for e in shown)),
            "primary_event_count": len(prim),
            "primary_unique_users": converters,
            "primary_conversion_rate": converters / len(users) if users else None,
            "value_sum": value_sum,
            "value_per_user": value_sum / len(users) if users else None,
        }
    control = next(v for v in experiment["variants"] if v["is_control"])
    c = rows[control["id"]]
    comparisons = []
    for v in experiment["variants"]:
        if v["is_control"]:
            continue
        r = rows[v["id"]]
        x1, n1, x2, n2 = c["primary_unique_users"], c["users"], r["primary_unique_users"], r["users"]
        rate1, rate2 = c["primary_conversion_rate"], r["primary_conversion_rate"]
        absolute = rate2 - rate1 if rate1 is not None and rate2 is not None else None
        z, p = _pooled_z(x1, n1, x2, n2)
        lower, upper = _newcombe(x1, n1, x2, n2)
        comparisons.append({
            "variant_id": v["id"],
            "baseline_variant_id": control["id"],
            "absolute_lift": absolute,
            "relative_lift": absolute / rate1 if absolute is not None and rate1 else None,
            "z_score": z,
            "p_value": p,
            "p_value_adjusted": None,
            "significant": bool(p is not None and p < 0.05),
            "confidence_interval": {"level": 0.95, "method": "newcombe", "lower": lower, "upper": upper},
            "value": _welch(totals[control["id"]], totals[v["id"]]),
        })
    defined = [i for i, comp in enumerate(comparisons) if comp["p_value"] is not None]
    if defined:
        adjusted = multipletests([comparisons[i]["p_value"] for i in defined], method="holm")[1]
        for i, p_adj in zip(defined, adjusted, strict=True):
            comparisons[i]["p_value_adjusted"] = float(p_adj)
    # SRM: over the whole experiment, variants with traffic above 0.
    active = [(rows[v["id"]]["users"], v["traffic_percentage"]) for v in experiment["variants"] if v["traffic_percentage"] > 0]
    n_total = sum(n for n, _ in active)
    srm: dict[str, Any] = {"chi_square": None, "p_value": None, "mismatch": False}
    if n_total and len(active) >= 2:
        share = sum(s for _, s in active)
        chi = stats.chisquare([n for n, _ in active], f_exp=[n_total * s / share for _, s in active])
        srm = {"chi_square": float(chi.statistic), "p_value": float(chi.pvalue), "mismatch": bool(chi.pvalue < 0.001)}
    shown_ids = [v["id"] for v in experiment["variants"] if variant_id in (None, v["id"])]
    variant_rows = [rows[i] for i in shown_ids]
    return {
        "experiment": experiment,
        "filters": {
            "start_date": start,
            "end_date": end,
            "event_type": event_type,
            "variant_id": variant_id,
            "primary_event_type": primary_type,
        },
        "summary": {
            "total_users": sum(r["users"] for r in variant_rows),
            "total_events": sum(r["events"] for r in variant_rows),
            "srm": srm,
        },
        "variants": variant_rows,
        "comparisons": [comp for comp in comparisons if comp["variant_id"] in shown_ids],
    }


def assert_matches(actual: Any, expected: Any, path: str = "$") -> None:
    """Every expected key present and equal (floats to 1e-9 relative); None must be null."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r}"
        if path.endswith("event_counts"):
            assert actual == expected, path
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} is missing"
            assert_matches(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_matches(a, e, f"{path}[{i}]")
    elif expected is None:
        assert actual is None, f"{path}: {actual!r} should be null"
    elif isinstance(expected, bool):
        assert actual is expected, f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, datetime):
        assert actual is not None and parse_ts(actual) == expected, f"{path}: {actual!r} != {expected}"
    elif isinstance(expected, float):
        assert isinstance(actual, int | float) and not isinstance(actual, bool), f"{path}: {actual!r}"
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12), f"{path}: {actual!r} != {expected!r}"
    else:
        assert actual == expected and type(actual) is type(expected), f"{path}: {actual!r} != {expected!r}"


UTC_PLUS_2 = timezone(timedelta(hours=2))
UTC_PLUS_1 = timezone(timedelta(hours=1))


def _three_arm_cases(sc: Scenario) -> dict[str, tuple[dict, dict]]:
    control, b, c = (v["id"] for v in sc.three_arms["variants"])
    pivot = sc.assignments[sc.three_arms["id"]][sc.users[10]][1]  # someone's exact assigned_at
    day2, day2_end = datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 11, 29, 23, 59, 59, 999_999, tzinfo=UTC)
    return {
        "no filters": ({}, {}),
        "start as a bare date": ({"start_date": "2026-11-29"}, {"start": day2}),
        "end as a bare date": ({"end_date": "2026-11-29"}, {"end": day2_end}),
        "end on the first day": (
            {"end_date": "2026-11-28"},
            {"end": datetime(2026, 11, 28, 23, 59, 59, 999_999, tzinfo=UTC)},
        ),
        "one whole day": ({"start_date": "2026-11-29", "end_date": "2026-11-29"}, {"start": day2, "end": day2_end}),
        "datetimes, Z and no offset": (
            {"start_date": "2026-11-28T18:30:00Z", "end_date": "2026-11-30T01:00:00"},
            {"start": datetime(2026, 11, 28, 18, 30, tzinfo=UTC), "end": datetime(2026, 11, 30, 1, tzinfo=UTC)},
        ),
        "end exactly at an assignment, +02:00": (
            {"end_date": pivot.astimezone(UTC_PLUS_2).isoformat()},
            {"end": pivot},
        ),
        "start exactly at an assignment": ({"start_date": iso(pivot)}, {"start": pivot}),
        "event_type filter": ({"event_type": "view"}, {"event_type": "view"}),
        "event_type matching nothing": ({"event_type": "nothing"}, {"event_type": "nothing"}),
        "primary_event_type overrides": ({"primary_event_type": "signup"}, {"primary": "signup"}),
        "event_type and primary override": (
            {"event_type": "signup", "primary_event_type": "view"},
            {"event_type": "signup", "primary": "view"},
        ),
        "variant_id of a treatment": ({"variant_id": b}, {"variant_id": b}),
        "variant_id of the control": ({"variant_id": control}, {"variant_id": control}),
        "variant_id with every other filter": (
            {"variant_id": c, "event_type": "purchase", "start_date": "2026-11-29", "end_date": "2026-11-30T12:00:00+01:00"},
            {"variant_id": c, "event_type": "purchase", "start": day2, "end": datetime(2026, 11, 30, 11, tzinfo=UTC)},
        ),
    }


def test_results_match_an_independent_computation(scenario: Scenario, subtests) -> None:
    sc, client = scenario, scenario.client
    for name, (params, expect) in _three_arm_cases(sc).items():
        with subtests.test(msg=name):
            actual = results(client, sc.three_arms["id"], **params)
            assert_matches(actual, expected_results(sc, sc.three_arms, **expect))
    no_primary_cases = {
        "no primary anywhere: any event": ({}, {}),
        "primary defaults to the event_type filter": ({"event_type": "signup"}, {"event_type": "signup"}),
        "primary param over the event_type filter": (
            {"event_type": "signup", "primary_event_type": "purchase"},
            {"event_type": "signup", "primary": "purchase"},
        ),
        "end bare date": ({"end_date": "2026-11-29"}, {"end": datetime(2026, 11, 29, 23, 59, 59, 999_999, tzinfo=UTC)}),
    }
    for name, (params, expect) in no_primary_cases.items():
        with subtests.test(msg=name):
            actual = results(client, sc.no_primary["id"], **params)
            assert_matches(actual, expected_results(sc, sc.no_primary, **expect))


def test_scenario_is_not_degenerate(scenario: Scenario) -> None:
    """Guards the scenario itself: the numbers the big test compares are real, not all null."""
    client = scenario.client
    report = results(client, scenario.three_arms["id"])
    assert [v["users"] for v in report["variants"]] == [9, 8, 7]
    for comparison in report["comparisons"]:
        assert comparison["z_score"] is not None and comparison["value"]["t_statistic"] is not None
        assert comparison["confidence_interval"]["lower"] is not None
    assert all(v["value_sum"] > 0 for v in report["variants"])
    # The counting rule excluded something: stored events outnumber counted ones.
    assert report["summary"]["total_events"] < sum(1 for e in scenario.events if e.experiment_id == scenario.three_arms["id"])


def test_variant_filter_keeps_srm_and_holm_over_the_whole_experiment(scenario: Scenario) -> None:
    client = scenario.client
    eid = scenario.three_arms["id"]
    whole = results(client, eid)
    b = scenario.three_arms["variants"][1]["id"]
    narrowed = results(client, eid, variant_id=b)
    assert [v["variant_id"] for v in narrowed["variants"]] == [b]
    assert [c["variant_id"] for c in narrowed["comparisons"]] == [b]
    assert narrowed["summary"]["srm"] == whole["summary"]["srm"]
    assert narrowed["comparisons"][0] == whole["comparisons"][0]
    assert narrowed["summary"]["total_users"] == whole["variants"][1]["users"]


@pytest.mark.parametrize(
    "params,field_name",
    [
        ({"variant_id": "not-a-variant"}, "variant_id"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"end_date": "2026-02-30"}, "end_date"),
        ({"end_date": "2026-11-28T25:00:00"}, "end_date"),
        ({"start_date": "2026-11-29", "end_date": "2026-11-28"}, "start_date"),
        ({"start_date": "2026-11-28T12:00:01Z", "end_date": "2026-11-28T12:00:00Z"}, "start_date"),
        ({"event_type": ""}, "event_type"),
    ],
)
def test_bad_results_filters_are_422(client: TestClient, experiment: dict, params: dict, field_name: str) -> None:
    response = client.get(f"/experiments/{experiment['id']}/results", params=params)
    body = assert_problem(response, 422)
    assert field_name in {e["field"] for e in body["errors"]}


def test_results_of_unknown_experiment_is_404(client: TestClient) -> None:
    assert_problem(client.get("/experiments/nope/results"), 404)


COMPARISON_KEYS = {
    "variant_id", "baseline_variant_id", "absolute_lift", "relative_lift", "z_score", "p_value",
    "p_value_adjusted", "significant", "confidence_interval", "value",
}
VALUE_KEYS = {"absolute_lift", "relative_lift", "t_statistic", "p_value", "significant", "confidence_interval"}
VARIANT_KEYS = {
    "variant_id", "variant_name", "is_control", "users", "events", "unique_users_with_events",
    "event_counts", "primary_event_count", "primary_unique_users", "primary_conversion_rate",
    "value_sum", "value_per_user",
}


def assert_every_documented_field(report: dict) -> None:
    assert {"experiment", "filters", "summary", "variants", "comparisons"} <= set(report)
    assert {"start_date", "end_date", "event_type", "variant_id", "primary_event_type"} <= set(report["filters"])
    assert {"total_users", "total_events", "srm"} <= set(report["summary"])
    assert {"chi_square", "p_value", "mismatch"} <= set(report["summary"]["srm"])
    for row in report["variants"]:
        assert VARIANT_KEYS <= set(row)
    for comparison in report["comparisons"]:
        assert COMPARISON_KEYS <= set(comparison)
        assert VALUE_KEYS <= set(comparison["value"])
        assert {"level", "method", "lower", "upper"} <= set(comparison["confidence_interval"])
        assert comparison["confidence_interval"]["method"] == "newcombe"
        assert comparison["confidence_interval"]["level"] == 0.95
        assert {"level", "method", "lower", "upper"} <= set(comparison["value"]["confidence_interval"])
        assert comparison["value"]["confidence_interval"]["method"] == "welch"
        assert comparison["value"]["confidence_interval"]["level"] == 0.95


def test_empty_experiment_has_nulls_and_no_nan(client: TestClient) -> None:
    experiment = create_experiment(client, "empty", [("a", 30), ("b", 30), ("c", 40)], "purchase")
    response = client.get(f"/experiments/{experiment['id']}/results")
    assert response.status_code == 200
    assert "NaN" not in response.text and "Infinity" not in response.text
    report = response.json()
    assert_every_documented_field(report)
    assert report["summary"] == {
        "total_users": 0,
        "total_events": 0,
        # No users: nothing to test, and no evidence against the split (a Bayes factor of 1).
        "srm": {"chi_square": None, "p_value": None, "mismatch": False,
                "sequential": {"log_bayes_factor": 0.0, "p_value": 1.0, "mismatch": False}},
    }
    for row in report["variants"]:
        assert row["users"] == row["events"] == row["primary_unique_users"] == 0
        assert row["event_counts"] == {}
        assert row["primary_conversion_rate"] is None and row["value_per_user"] is None
        assert row["value_sum"] in (0, None)
    assert len(report["comparisons"]) == 2
    for comparison in report["comparisons"]:
        for key in ("absolute_lift", "relative_lift", "z_score", "p_value", "p_value_adjusted"):
            assert comparison[key] is None, key
        assert comparison["significant"] is False
        assert comparison["confidence_interval"]["lower"] is None
        assert comparison["confidence_interval"]["upper"] is None
        value = comparison["value"]
        for key in ("absolute_lift", "relative_lift", "t_statistic", "p_value"):
            assert value[key] is None, key
        assert value["significant"] is False
        assert value["confidence_interval"]["lower"] is None and value["confidence_interval"]["upper"] is None


def test_users_without_events_give_zero_rates_null_tests_and_a_defined_interval(client: TestClient) -> None:
    experiment = create_experiment(client, "quiet", [("a", 50), ("b", 50)], "purchase")
    for i in range(40):
        assign(client, experiment["id"], f"u-{i}")
    report = results(client, experiment["id"])
    assert_every_documented_field(report)
    assert all(row["primary_conversion_rate"] == 0.0 for row in report["variants"])
    (comparison,) = report["comparisons"]
    assert comparison["absolute_lift"] == 0.0
    assert comparison["relative_lift"] is None
    assert comparison["z_score"] is None and comparison["p_value"] is None
    assert comparison["p_value_adjusted"] is None and comparison["significant"] is False
    interval = comparison["confidence_interval"]
    assert interval["lower"] is not None and interval["lower"] < 0 < interval["upper"]
    assert comparison["value"]["t_statistic"] is None and comparison["value"]["absolute_lift"] == 0.0


def test_huge_values_never_give_nan_or_infinity(client: TestClient, experiment: dict) -> None:
    eid = experiment["id"]
    for i in range(6):
        assign(client, eid, f"u-{i}")
    batch = [event(eid, f"u-{i}", "buy", value=sign * 1e308) for i in range(6) for sign in (1, 1, -1)]
    assert client.post("/events", json={"events": batch}).status_code == 202
    response = client.get(f"/experiments/{eid}/results")
    assert response.status_code == 200
    assert "NaN" not in response.text and "Infinity" not in response.text
    assert_every_documented_field(response.json())


