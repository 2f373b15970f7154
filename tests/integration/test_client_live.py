"""The Python client (clients/python) against real servers: every endpoint through the sync and
async clients, local assignment against the service's own answer for users it has never seen,
and locally assigned users counted in results like the service's own, on SQLite and on two
instances over PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from experiments_client import (
    AsyncClient,
    Client,
    EventTracker,
    ExposureReporter,
    LocalAssigner,
    NotFound,
    ValidationError,
)

TOKEN = "t"
HALVES = [{"name": "control", "traffic_percentage": 50}, {"name": "green", "traffic_percentage": 50}]


def test_the_sync_client_covers_the_api(start_servers, database_url: str) -> None:
    (server,) = start_servers({"DATABASE_URL": database_url, "API_TOKENS": TOKEN})
    with Client(server.base_url, TOKEN) as c:
        assert c.health().status == "ok"
        assert "# TYPE" in c.metrics()
        layer = c.create_layer("page")
        holdout = c.create_holdout("global", 5)
        created = c.create_experiment(name="checkout", variants=HALVES, primary_event_type="buy",
                                      layer={"id": layer.id, "percentage": 50}, holdout_id=holdout.id)
        assert (created.status, created.layer.start, created.layer.end, created.holdout_id) == (
            "running", 0, 5000, holdout.id)
        assert [e.id for e in c.iter_experiments(page_size=1)] == [created.id]
        assert c.list_experiments().total == 1 and c.get_experiment(created.id).name == "checkout"
        assert c.update_experiment(created.id, description="green button").description == "green button"

        qa = c.force_assignment(created.id, "qa 1 ü?#%", created.variants[1].id)
        assert (qa.reason, qa.user_id) == ("forced", "qa 1 ü?#%")
        assert c.assign(created.id, "qa 1 ü?#%").variant_id == created.variants[1].id
        c.remove_override(created.id, "qa 1 ü?#%")
        users = [f"u-{i}" for i in range(200)]
        answers = {u: c.assign(created.id, u, {"plan": "pro"}) for u in users}
        inside = [u for u, a in answers.items() if a.in_experiment]
        assert inside and all(answers[u].assigned_at is not None for u in inside)
        tracked = c.track([{"experiment_id": created.id, "user_id": u, "event_type": "buy", "value": 2.0}
                           for u in inside])
        assert (tracked.accepted, tracked.duplicates) == (len(inside), 0)

        results = c.results(created.id, method="bayesian")
        assert sum(v.users for v in results.variants) == len(inside)
        assert sum(v.primary_unique_users for v in results.variants) == len(inside)
        assert results.analysis.method == "bayesian" and len(results.comparisons) == 1
        assert results.comparisons[0].bayesian is not None
        with pytest.raises(ValidationError):  # CUPED asked of an experiment that does not keep pre-periods
            c.results(created.id, cuped=True)
        c.update_experiment(created.id, analysis={"cuped": True})
        adjusted = None
        for _ in range(200):  # until the next fold has filled the pre-periods (503s are retried)
            adjusted = c.results(created.id)
            if adjusted.comparisons[0].cuped is not None:
                break
        assert adjusted is not None and adjusted.analysis.cuped and adjusted.comparisons[0].cuped is not None
        # No pre-period here: theta is undefined and the figures are the unadjusted ones.
        assert adjusted.comparisons[0].cuped.theta is None and adjusted.comparisons[0].value.cuped is not None
        assert c.power(baseline_rate=0.1, mde=0.02).users_per_arm.total > 0

        key = c.create_key("reader", ["read"])
        assert key.key and key.scopes == ["read"]
        assert [k.id for k in c.iter_keys()] == [key.id]
        assert c.revoke_key(key.id).revoked_at is not None
        assert {e.action for e in c.audit(limit=500).items} >= {"experiment.created", "key.created", "key.revoked"}
        assert [x.id for x in c.list_layers()] == [layer.id] and c.get_layer(layer.id).name == "page"
        assert [x.id for x in c.list_holdouts()] == [holdout.id] and c.get_holdout(holdout.id).percentage == 5
        held = c.holdout_results(holdout.id, "buy")
        assert held.exposed.users == len(inside)

        with pytest.raises(NotFound):
            c.get_experiment("nope")
        with pytest.raises(ValueError, match="LocalAssigner"):
            c.assign(created.id, "a/b")
        with pytest.raises(ValidationError) as refused:
            c.create_experiment(name="", variants=[{"name": "a", "traffic_percentage": 70}])
        assert {"name", "variants"} <= {e.field for e in refused.value.errors}
        with pytest.raises(ValidationError) as bad_batch:
            c.track([{"experiment_id": created.id, "user_id": "u", "event_type": "buy"},
                     {"experiment_id": "nope", "user_id": "u", "event_type": "buy"}])
        assert [e.field for e in bad_batch.value.errors] == ["events[1].experiment_id"]


def test_the_async_client_answers_as_the_sync_one(start_servers, database_url: str) -> None:
    (server,) = start_servers({"DATABASE_URL": database_url, "API_TOKENS": TOKEN})

    async def drive() -> None:
        async with AsyncClient(server.base_url, TOKEN) as c:
            created = await c.create_experiment(name="async", variants=HALVES, primary_event_type="buy")
            answers = await asyncio.gather(*(c.assign(created.id, f"u-{i}") for i in range(100)))
            assert len({a.user_id for a in answers}) == 100
            await c.track([{"experiment_id": created.id, "user_id": "u-1", "event_type": "buy"}])
            results = await c.results(created.id)
            assert sum(v.users for v in results.variants) == 100
            assert sum(v.primary_unique_users for v in results.variants) == 1
            with pytest.raises(NotFound):
                await c.results("nope")
            definitions, etag = await c.definitions()
            assert definitions is not None and [d.id for d in definitions.experiments] == [created.id]
            assert await c.definitions(etag) == (None, etag)

    asyncio.run(drive())


def the_experiments(c: Client) -> list:
    """Experiments of every kind a decision can meet: ramps, audiences, layers, holdouts,
    overrides, and each state."""
    layer = c.create_layer("shared page")
    holdout = c.create_holdout("global", 10)
    made = [
        c.create_experiment(name="plain", variants=[{"name": "a", "traffic_percentage": 20},
                                                    {"name": "b", "traffic_percentage": 30},
                                                    {"name": "c", "traffic_percentage": 50}]),
        c.create_experiment(name="ramp", variants=HALVES, coverage=30),
        c.create_experiment(name="aimed", variants=HALVES, audience={"all": [
            {"attribute": "country", "op": "in", "value": ["DE", "AT"]},
            {"any": [{"attribute": "age", "op": "gte", "value": 18}, {"attribute": "plan", "op": "eq", "value": "pro"}]},
            {"not": {"attribute": "app", "op": "version_lt", "value": "3.0.0"}}]}),
        c.create_experiment(name="left", variants=HALVES, layer={"id": layer.id, "percentage": 40}),
        c.create_experiment(name="right", variants=HALVES, layer={"id": layer.id, "percentage": 60}, coverage=80),
        c.create_experiment(name="held", variants=HALVES, holdout_id=holdout.id),
        c.create_experiment(name="paused", variants=HALVES),
        c.create_experiment(name="stopped", variants=HALVES),
        c.create_experiment(name="draft", variants=HALVES, status="draft"),
    ]
    by_name = {e.name: e for e in made}
    c.update_experiment(by_name["paused"].id, status="paused")
    c.update_experiment(by_name["stopped"].id, status="stopped", winner_variant_id=by_name["stopped"].variants[1].id)
    for e in made:
        c.force_assignment(e.id, "qa-forced", e.variants[-1].id)
    return made


def attributes_of(rng: random.Random) -> dict:
    chosen = {"country": rng.choice(["DE", "AT", "FR", 1]), "age": rng.choice([16, 18, 30, 18.0, "30"]),
              "plan": rng.choice(["pro", "free", None]), "app": rng.choice(["2.9.9", "3.0.0", "3.0.0-beta.1", "v3.1", "x"])}
    return {k: v for k, v in chosen.items() if rng.random() < 0.9}


def test_local_assignment_answers_as_the_service_for_10000_users_it_never_saw(start_servers, database_url: str) -> None:
    (server,) = start_servers({"DATABASE_URL": database_url, "API_TOKENS": TOKEN})
    with Client(server.base_url, TOKEN) as c:
        made = the_experiments(c)
        assigner = LocalAssigner(fetch=c.definitions)
        rng = random.Random(20)
        asked = [(made[i % len(made)], f"user-{rng.getrandbits(40):x}-{i}", attributes_of(rng)) for i in range(10_000)]
        asked += [(e, "qa-forced", {}) for e in made]
        local = [assigner.assign(e.id, u, a) for e, u, a in asked]
        assigner.close()

    async def ask_the_service() -> list:
        async with AsyncClient(server.base_url, TOKEN) as a:
            answers = []
            for start in range(0, len(asked), 64):
                answers += await asyncio.gather(*(a.assign(e.id, u, at) for e, u, at in asked[start:start + 64]))
            return answers

    served = asyncio.run(ask_the_service())
    differing = [(d, s) for d, s in zip(local, served, strict=True)
                 if (d.variant_id, d.reason, d.in_experiment) != (s.variant_id, s.reason, s.in_experiment)]
    assert not differing, differing[:5]
    assert set(Counter(d.reason for d in local)) >= {
        "assigned", "coverage", "audience", "layer", "holdout", "paused", "winner", "draft", "forced"}


def test_locally_assigned_users_count_in_results_on_two_instances(
    start_servers, postgres_database: str, redis_url: str
) -> None:
    env = {"DATABASE_URL": postgres_database, "CACHE_URL": redis_url, "API_TOKENS": TOKEN}
    one, other = start_servers(env, dict(env))
    with Client(one.base_url, TOKEN) as a, Client(other.base_url, TOKEN) as b:
        experiment = a.create_experiment(name="local", variants=HALVES, primary_event_type="buy")
        reporter = ExposureReporter(b, max_age_seconds=0.2)
        tracker = EventTracker(b, max_age_seconds=0.2)
        assigner = LocalAssigner(fetch=a.definitions, report=reporter.report)
        before = datetime.now(UTC)
        decisions = [assigner.assign(experiment.id, f"u-{i}") for i in range(3_000)]
        for d in decisions[:3_000:3]:
            assert tracker.track(experiment.id, d.user_id, "buy", value=5.0)
        for d in decisions[:100]:  # seen again: reported once
            assigner.assign(experiment.id, d.user_id)
        assert reporter.flush(30) and tracker.flush(30)
        assert (reporter.stats.rejected, reporter.stats.failed, tracker.stats.rejected) == (0, 0, 0)

        results = a.results(experiment.id)
        by_variant = Counter(d.variant_id for d in decisions)
        assert {v.variant_id: v.users for v in results.variants} == dict(by_variant)
        assert sum(v.primary_unique_users for v in results.variants) == 1_000
        for d in decisions[:20]:
            stored = a.assign(experiment.id, d.user_id)
            assert stored.variant_id == d.variant_id and stored.reason == "assigned"
            assert before - timedelta(seconds=1) <= stored.assigned_at <= datetime.now(UTC)
        reporter.close()
        tracker.close()
        assigner.close()
