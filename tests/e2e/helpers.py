"""What the end-to-end tests share: problem documents, the documented hash, and short ways to
assign, send events and read results over HTTP."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import START

PROBLEM_JSON = "application/problem+json"
T0 = START  # the e2e tests' clock starts here


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_ts(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.utcoffset() == timedelta(0), f"{text!r} is not UTC"
    return moment


def assert_problem(response: httpx.Response, status: int, fields: set[str] | None = None) -> dict:
    """An RFC 9457 problem document with ``status``; ``fields``: exactly the fields in `errors`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    if fields is not None:
        assert isinstance(body.get("errors"), list), body
        for error in body["errors"]:
            assert isinstance(error["message"], str) and error["message"], error
        assert {e["field"] for e in body["errors"]} == fields, body["errors"]
    return body


def documented_bucket(experiment_id: str, user_id: str) -> int:
    """API.md / README: SHA-256 of "experiment_id:user_id", first 8 bytes big-endian, mod 10,000."""
    digest = hashlib.sha256(f"{experiment_id}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def expected_variant(experiment: dict, user_id: str) -> dict:
    """The variant whose range [cum_prev, cum) of basis points, in variant order, holds the
    bucket of the documented hash (computed here, not by the service's own function)."""
    bucket = documented_bucket(experiment["id"], user_id)
    cumulative = 0
    for variant in experiment["variants"]:
        cumulative += round(variant["traffic_percentage"] * 100)
        if bucket < cumulative:
            return variant
    raise AssertionError(f"bucket {bucket} beyond the split of {experiment['variants']}")


def assign(client: TestClient, experiment_id: str, user_id: str) -> httpx.Response:
    return client.get(f"/experiments/{experiment_id}/assignment/{quote(user_id, safe='')}")


def event(experiment_id: str, user_id: str, event_type: str = "view", **extra: Any) -> dict:
    return {"experiment_id": experiment_id, "user_id": user_id, "event_type": event_type, **extra}


def results(client: TestClient, experiment_id: str, **params: str) -> dict:
    response = client.get(f"/experiments/{experiment_id}/results", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "NaN" not in response.text and "Infinity" not in response.text
    return response.json()


def total_events(client: TestClient, experiment_id: str) -> int:
    return results(client, experiment_id)["summary"]["total_events"]


# ---- /metrics
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> tuple[str, Samples]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, route: str, status: int, method: str = "GET") -> float:
    labels = {"method": method, "route": route, "status": str(status)}
    return value(samples, "experiments_http_requests_total", **labels)
