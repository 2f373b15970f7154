"""The read-outs a watching team asks for, through two real server processes on PostgreSQL and
Redis: every number against the reference formulas (tests/references.py, statsmodels) over what
the test sent, and the same answer from either instance."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import httpx
import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from tests.factories import experiment_body
from tests.polling import eventually
from tests.references import always_valid_p, sequence_half_width

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

AUTH = {"Authorization": "Bearer t"}


def differences(x: object, y: object, path: str = "") -> list[tuple[str, object, object]]:
    """The leaves in which two JSON answers differ, by path. Value sums are doubles, added in
    another order once a fold has moved events from the tail into the totals: floats agree to
    1e-12, everything else exactly."""
    if isinstance(x, float) and isinstance(y, float):
        return [] if math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15) else [(path, x, y)]
    if isinstance(x, dict) and isinstance(y, dict) and x.keys() == y.keys():
        return [d for k in x for d in differences(x[k], y[k], f"{path}.{k}")]
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        return [d for i, (u, v) in enumerate(zip(x, y)) for d in differences(u, v, f"{path}[{i}]")]
    return [] if x == y else [(path, x, y)]


def test_sequential_bayesian_and_corrections_agree_across_instances(
    start_servers, postgres_database: str, redis_url: str
) -> None:
    env = {"DATABASE_URL": postgres_database, "CACHE_URL": redis_url, "API_TOKENS": "t"}
    one, other = start_servers(env, dict(env))
    a = httpx.Client(base_url=one.base_url, headers=AUTH, timeout=30)
    b = httpx.Client(base_url=other.base_url, headers=AUTH, timeout=30)
    body = experiment_body(split=[("control", 40), ("b", 30), ("c", 30)], primary="buy",
                           analysis={"method": "sequential", "sequential_tuning_users": 1_000})
    created = a.post("/experiments", json=body)
    assert created.status_code == 201, created.text
    x = created.json()["id"]
    rates = {"control": 0.2, "b": 0.3, "c": 0.25}
    rng = random.Random(16)
    values: dict[str, list[float]] = defaultdict(list)
    batch = []
    for i in range(450):
        client = (a, b)[i % 2]
        variant = client.get(f"/experiments/{x}/assignment/u{i}").json()["variant_name"]
        bought = rng.random() < rates[variant]
        amount = round(rng.uniform(1, 30), 2) if bought else 0.0
        if bought:
            batch.append({"experiment_id": x, "user_id": f"u{i}", "event_type": "buy", "value": amount})
        values[variant].append(amount)
    assert b.post("/events", json={"events": batch}).status_code == 202

    first, second = a.get(f"/experiments/{x}/results").json(), b.get(f"/experiments/{x}/results").json()
    assert not differences(first, second)  # exact at any moment, from either instance
    control = np.array(values["control"])
    for comparison in first["comparisons"]:
        name = next(v["variant_name"] for v in first["variants"] if v["variant_id"] == comparison["variant_id"])
        variant = np.array(values[name])
        users = len(control) + len(variant)
        ra, rb = np.mean(control > 0), np.mean(variant > 0)
        se = math.sqrt(ra * (1 - ra) / len(control) + rb * (1 - rb) / len(variant))
        sequential = comparison["sequential"]
        assert sequential["confidence_interval"]["upper"] == pytest.approx(
            rb - ra + sequence_half_width(se, users, 1_000), rel=1e-9)
        assert sequential["p_value"] == pytest.approx(always_valid_p(rb - ra, se, users, 1_000), rel=1e-9)
        se_v = math.sqrt(control.var(ddof=1) / len(control) + variant.var(ddof=1) / len(variant))
        d_v = variant.mean() - control.mean()
        assert comparison["value"]["sequential"]["p_value"] == pytest.approx(
            always_valid_p(d_v, se_v, users, 1_000), rel=1e-9)
    holm = multipletests([c["sequential"]["p_value"] for c in first["comparisons"]], method="holm")[1]
    assert [c["sequential"]["p_value_adjusted"] for c in first["comparisons"]] == pytest.approx(list(holm), rel=1e-12)

    # A change of the default on one instance is how the other reads it too.
    changed = a.patch(f"/experiments/{x}", json={"analysis": {"method": "bayesian", "correction": "bh"}})
    assert changed.status_code == 200, changed.text

    def read_as_bayesian() -> dict | None:
        answer = b.get(f"/experiments/{x}/results").json()
        return answer if answer["analysis"]["method"] == "bayesian" else None

    # Within the near cache's documented bound (NEAR_CACHE_TTL_SECONDS, 5 s).
    bayesian = eventually(read_as_bayesian, 6.0, "the other instance reading the new analysis")
    assert bayesian["analysis"]["correction"] == "bh"
    raw = [c["p_value"] for c in bayesian["comparisons"]]
    bh = multipletests(raw, method="fdr_bh")[1]
    assert [c["p_value_adjusted"] for c in bayesian["comparisons"]] == pytest.approx(list(bh), rel=1e-12)
    for comparison in bayesian["comparisons"]:
        chance = comparison["bayesian"]["chance_to_beat_control"]
        assert 0.0 <= chance <= 1.0 and "sequential" not in comparison
    assert not differences(a.get(f"/experiments/{x}/results").json(), bayesian)

    power = b.post("/power", json={"experiment_id": x, "mde": 0.2})
    assert power.status_code == 200, power.text
    assert power.json()["traffic"]["users_so_far"] == 450
    assert power.json()["baseline_rate"] == pytest.approx(float(np.mean(control > 0)), rel=1e-12)
