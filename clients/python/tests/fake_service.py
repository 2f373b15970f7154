"""The service in memory, for the clients' tests: an ``httpx.MockTransport`` handler that
routes by method and path, checks the bearer token and the JSON bodies, keeps state (so that
what a call stored, a later call reads), and answers as the service does, problem+json and
all. Faults are scripted: ``fail_next`` makes the next requests answer an error or lose
their connection, before or after the request took effect.

Only the behaviour the clients depend on is modelled; assignment picks a variant by a plain
hash, not the service's.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx

TOKEN = "s3cret-token-value"
NOW = "2026-11-28T14:00:00Z"

Handle = Callable[[httpx.Request], httpx.Response]
Fault = Callable[[httpx.Request, Handle], httpx.Response]


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status, self.title, self.detail, self.errors = status, title, detail, errors
        self.headers = headers or {}

    def response(self) -> httpx.Response:
        body: dict[str, Any] = {"status": self.status, "title": self.title, "detail": self.detail}
        if self.errors is not None:
            body["errors"] = self.errors
        return httpx.Response(
            self.status,
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/problem+json", **self.headers},
        )


def invalid(errors: list[dict[str, str]]) -> Problem:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Problem(422, "Unprocessable Entity", detail, errors)


def not_found(what: str, id_: str) -> Problem:
    return Problem(404, "Not Found", f"{what} {id_} does not exist")


# ------------------------------------------------------------------------------ faults


def answer(status: int, *, retry_after: str | None = None, body: bytes | None = None) -> Fault:
    """The next request gets this answer and takes no effect."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}

    def fault(request: httpx.Request, handle: Handle) -> httpx.Response:
        if body is not None:
            return httpx.Response(
                status, content=body, headers={"Content-Type": "text/html", **headers}
            )
        titles = {429: "Too Many Requests", 503: "Service Unavailable", 502: "Bad Gateway"}
        return Problem(status, titles.get(status, "Error"), "scripted", headers=headers).response()

    return fault


def refuse(error: type[httpx.TransportError] = httpx.ConnectError) -> Fault:
    """The request never reaches the service (``error`` before it is handled)."""

    def fault(request: httpx.Request, handle: Handle) -> httpx.Response:
        raise error("scripted: the connection failed", request=request)

    return fault


def lose_answer(error: type[httpx.TransportError] = httpx.ReadTimeout) -> Fault:
    """The request takes effect, and its answer is lost on the way back."""

    def fault(request: httpx.Request, handle: Handle) -> httpx.Response:
        handle(request)
        raise error("scripted: the answer was lost", request=request)

    return fault


# ------------------------------------------------------------------------------ the service


class FakeService:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.faults: deque[Fault] = deque()
        self.experiments: dict[str, dict[str, Any]] = {}  # in creation order
        self.assignments: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}  # by event_id
        self.exposures: list[dict[str, Any]] = []
        self.keys: dict[str, dict[str, Any]] = {}
        self.layers: dict[str, dict[str, Any]] = {}
        self.holdouts: dict[str, dict[str, Any]] = {}
        self.audit: list[dict[str, Any]] = []
        self.health = "ok"
        self._ids = 0
        self._lock = threading.Lock()  # a tracker's thread and the test's share the service

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def fail_next(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        """The requests with this method to this path (unquoted, without the query)."""
        return [r for r in self.requests if r.method == method and route_of(r) == path]

    # -------------------------------------------------------------------------- dispatch

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            if self.faults:
                return self.faults.popleft()(request, self._answer)
            return self._answer(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        try:
            return self._route(request)
        except Problem as problem:
            return problem.response()

    def _route(self, request: httpx.Request) -> httpx.Response:
        parts = segments(request)
        method = request.method
        if parts == ["health"] and method == "GET":
            return self._json(200 if self.health == "ok" else 503, {"status": self.health})
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise Problem(
                401,
                "Unauthorized",
                "a valid bearer credential is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = self._body(request)
        q = request.url.params
        match method, parts:
            case "GET", ["metrics"]:
                return httpx.Response(200, text="# TYPE experiments_up gauge\nexperiments_up 1\n")
            case "POST", ["experiments"]:
                return self._json(201, self._create_experiment(body))
            case "GET", ["experiments"]:
                items = list(reversed(self.experiments.values()))  # newest first
                offset, limit = int(q.get("offset", 0)), int(q.get("limit", 100))
                return self._json(
                    200, {"items": items[offset : offset + limit], "total": len(items)}
                )
            case "GET", ["experiments", experiment_id]:
                return self._json(200, self._experiment(experiment_id))
            case "PATCH", ["experiments", experiment_id]:
                experiment = self._experiment(experiment_id)
                experiment.update(body)
                return self._json(200, experiment)
            case (("GET" | "POST"), ["experiments", experiment_id, "assignment", user_id]):
                return self._json(200, self._assign(experiment_id, user_id, body))
            case "PUT", ["experiments", experiment_id, "assignment", user_id]:
                experiment = self._experiment(experiment_id)
                experiment["overrides"] = [
                    o for o in experiment["overrides"] if o["user_id"] != user_id
                ]
                experiment["overrides"].append(
                    {"user_id": user_id, "variant_id": body["variant_id"], "forced_at": NOW}
                )
                return self._json(200, self._assign(experiment_id, user_id, None))
            case "DELETE", ["experiments", experiment_id, "assignment", user_id]:
                experiment = self._experiment(experiment_id)
                experiment["overrides"] = [
                    o for o in experiment["overrides"] if o["user_id"] != user_id
                ]
                return httpx.Response(204)
            case "GET", ["experiments", experiment_id, "results"]:
                return self._json(200, self._results(experiment_id, dict(q)))
            case "POST", ["events"]:
                return self._json(202, self._record_events(body))
            case "POST", ["exposures"]:
                return self._json(202, self._record_exposures(body))
            case "GET", ["definitions"]:
                return self._definitions(request)
            case "POST", ["power"]:
                return self._json(200, self._power(body))
            case "POST", ["keys"]:
                return self._json(201, self._create_key(body))
            case "GET", ["keys"]:
                items = [self._listed(k) for k in reversed(self.keys.values())]
                offset, limit = int(q.get("offset", 0)), int(q.get("limit", 100))
                return self._json(
                    200, {"items": items[offset : offset + limit], "total": len(items)}
                )
            case "GET", ["keys", key_id]:
                return self._json(200, self._listed(self._find(self.keys, "key", key_id)))
            case "DELETE", ["keys", key_id]:
                key = self._find(self.keys, "key", key_id)
                key["revoked_at"] = key["revoked_at"] or NOW
                return self._json(200, self._listed(key))
            case "GET", ["audit"]:
                entries = [
                    e
                    for e in reversed(self.audit)
                    if q.get("action") in (None, e["action"])
                    and q.get("target_id") in (None, e["target"]["id"])
                ]
                offset, limit = int(q.get("offset", 0)), int(q.get("limit", 100))
                return self._json(
                    200, {"items": entries[offset : offset + limit], "total": len(entries)}
                )
            case "POST", ["layers"]:
                layer = {
                    "id": self._id(),
                    "name": body["name"],
                    "seed": "seed-" + body["name"],
                    "created_at": NOW,
                    "experiments": [],
                    "free_percentage": 100.0,
                }
                self.layers[layer["id"]] = layer
                return self._json(201, layer)
            case "GET", ["layers"]:
                return self._json(200, {"items": list(reversed(self.layers.values()))})
            case "GET", ["layers", layer_id]:
                return self._json(200, self._find(self.layers, "layer", layer_id))
            case "POST", ["holdouts"]:
                holdout = {
                    "id": self._id(),
                    "name": body["name"],
                    "seed": "seed-" + body["name"],
                    "percentage": body["percentage"],
                    "created_at": NOW,
                }
                self.holdouts[holdout["id"]] = holdout
                return self._json(201, holdout)
            case "GET", ["holdouts"]:
                return self._json(200, {"items": list(reversed(self.holdouts.values()))})
            case "GET", ["holdouts", holdout_id]:
                return self._json(200, self._find(self.holdouts, "holdout", holdout_id))
            case "GET", ["holdouts", holdout_id, "results"]:
                return self._json(200, self._holdout_results(holdout_id, q["event_type"]))
        raise Problem(404, "Not Found", f"no route {method} /{'/'.join(parts)}")

    # -------------------------------------------------------------------------- helpers

    def _id(self) -> str:
        self._ids += 1
        return f"id{self._ids:04d}"

    @staticmethod
    def _json(status: int, document: Any) -> httpx.Response:
        return httpx.Response(status, json=document)

    @staticmethod
    def _body(request: httpx.Request) -> Any:
        if request.method in ("GET", "DELETE"):
            assert not request.content, f"{request.method} with a body"
            return None
        assert request.headers.get("Content-Type") == "application/json", request.headers
        try:
            return json.loads(request.content)
        except ValueError:
            raise Problem(400, "Bad Request", "the body is not JSON") from None

    @staticmethod
    def _find(table: dict[str, dict[str, Any]], what: str, id_: str) -> dict[str, Any]:
        if id_ not in table:
            raise not_found(what, id_)
        return table[id_]

    def _experiment(self, experiment_id: str) -> dict[str, Any]:
        return self._find(self.experiments, "experiment", experiment_id)

    def _log(self, action: str, target_type: str, target_id: str, details: dict[str, Any]) -> None:
        self.audit.append(
            {
                "id": self._id(),
                "at": NOW,
                "actor": "API_TOKENS",
                "action": action,
                "target": {"type": target_type, "id": target_id},
                "details": details,
            }
        )

    # -------------------------------------------------------------------------- experiments

    def _create_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        variants = body.get("variants") or []
        errors = []
        if not body.get("name"):
            errors.append({"field": "name", "message": "must not be blank"})
        if sum(v.get("traffic_percentage", 0) for v in variants) != 100:
            errors.append(
                {"field": "variants", "message": "the traffic percentages must sum to 100"}
            )
        if errors:
            raise invalid(errors)
        if any(e["name"] == body["name"] for e in self.experiments.values()):
            raise Problem(409, "Conflict", f"an experiment named {body['name']!r} exists")
        controls = [v.get("is_control") for v in variants]
        experiment = {
            "id": self._id(),
            "name": body["name"],
            "description": body.get("description"),
            "primary_event_type": body.get("primary_event_type"),
            "created_at": NOW,
            "variants": [
                {
                    "id": self._id(),
                    "name": v["name"],
                    "traffic_percentage": float(v["traffic_percentage"]),
                    "is_control": bool(v.get("is_control")) or (i == 0 and not any(controls)),
                }
                for i, v in enumerate(variants)
            ],
            "status": body.get("status", "running"),
            "coverage": float(body.get("coverage", 100)),
            "audience": body.get("audience"),
            "winner_variant_id": None,
            "started_at": NOW,
            "stopped_at": None,
            "overrides": [],
            "layer": None,
            "holdout_id": body.get("holdout_id"),
            "analysis": {
                "method": "fixed",
                "sequential_tuning_users": 10000,
                "prior": None,
                "correction": "holm",
                **(body.get("analysis") or {}),
            },
            "added_by_a_later_release": {"ignored": True},
        }
        self.experiments[experiment["id"]] = experiment
        self._log("experiment.created", "experiment", experiment["id"], {})
        return experiment

    def _variant_for(self, experiment: dict[str, Any], user_id: str) -> dict[str, Any]:
        bucket = (
            int.from_bytes(hashlib.sha256(f"{experiment['id']}:{user_id}".encode()).digest()[:8])
            % 100
        )
        ends = 0.0
        variants: list[dict[str, Any]] = experiment["variants"]
        for variant in variants:
            ends += variant["traffic_percentage"]
            if bucket < ends:
                return variant
        return variants[-1]

    def _assign(
        self, experiment_id: str, user_id: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        experiment = self._experiment(experiment_id)
        if body is not None and not isinstance(body.get("attributes"), dict):
            raise invalid([{"field": "attributes", "message": "must be an object"}])
        by_id = {v["id"]: v for v in experiment["variants"]}
        forced = [o for o in experiment["overrides"] if o["user_id"] == user_id]
        if forced:
            variant = by_id[forced[0]["variant_id"]]
            return {
                "experiment_id": experiment_id,
                "user_id": user_id,
                "variant_id": variant["id"],
                "variant_name": variant["name"],
                "assigned_at": None,
                "in_experiment": True,
                "reason": "forced",
            }
        key = (experiment_id, user_id)
        if key not in self.assignments:
            variant = self._variant_for(experiment, user_id)
            self.assignments[key] = {
                "experiment_id": experiment_id,
                "user_id": user_id,
                "variant_id": variant["id"],
                "variant_name": variant["name"],
                "assigned_at": NOW,
                "in_experiment": True,
                "reason": "assigned",
            }
        return self.assignments[key]

    def _results(self, experiment_id: str, query: dict[str, str]) -> dict[str, Any]:
        experiment = self._experiment(experiment_id)
        control, *others = experiment["variants"]
        interval = {"level": 0.95, "method": "newcombe", "lower": -0.01, "upper": 0.03}
        bounds = {"level": 0.95, "lower": -0.02, "upper": 0.04}
        sequential = {
            "absolute_lift": 0.01,
            "confidence_interval": bounds,
            "p_value": 0.3,
            "significant": False,
            "tuning_users": 10000,
        }
        loss = {"if_shipped": 0.001, "if_kept": 0.004}
        bayesian = {
            "chance_to_beat_control": 0.8,
            "expected_loss": {"absolute": loss, "relative": loss},
            "absolute_lift": {"mean": 0.01, "credible_interval": bounds},
            "relative_lift": {"mean": 0.1, "credible_interval": bounds},
            "prior": "flat",
        }
        method = query.get("method", "fixed")

        def comparison(variant: dict[str, Any]) -> dict[str, Any]:
            value = {
                "absolute_lift": 0.5,
                "relative_lift": None,
                "t_statistic": 1.2,
                "p_value": 0.23,
                "significant": False,
                "confidence_interval": {**interval, "method": "welch"},
            }
            found = {
                "variant_id": variant["id"],
                "baseline_variant_id": control["id"],
                "absolute_lift": 0.01,
                "relative_lift": 0.1,
                "z_score": 1.1,
                "p_value": 0.27,
                "p_value_adjusted": 0.27,
                "significant": False,
                "confidence_interval": interval,
                "value": value,
            }
            if method == "sequential":
                found["sequential"] = {**sequential, "p_value_adjusted": 0.3}
                value["sequential"] = sequential
            if method == "bayesian":
                found["bayesian"] = value["bayesian"] = bayesian
            return found

        return {
            "experiment": experiment,
            "filters": {
                "start_date": moment(query.get("start_date")),
                "end_date": moment(query.get("end_date")),
                "event_type": query.get("event_type"),
                "variant_id": query.get("variant_id"),
                "primary_event_type": query.get(
                    "primary_event_type", experiment["primary_event_type"]
                ),
            },
            "summary": {
                "total_users": 200,
                "total_events": 50,
                "srm": {
                    "chi_square": 0.5,
                    "p_value": 0.48,
                    "mismatch": False,
                    "sequential": {"log_bayes_factor": -2.3, "p_value": 1.0, "mismatch": False},
                },
            },
            "variants": [
                {
                    "variant_id": v["id"],
                    "variant_name": v["name"],
                    "is_control": v["is_control"],
                    "users": 100,
                    "events": 25,
                    "unique_users_with_events": 20,
                    "event_counts": {"buy": 25},
                    "primary_event_count": 25,
                    "primary_unique_users": 20,
                    "primary_conversion_rate": 0.2,
                    "value_sum": 50.0,
                    "value_per_user": 0.5,
                }
                for v in experiment["variants"]
            ],
            "comparisons": [comparison(v) for v in others],
            "analysis": {**experiment["analysis"], "method": method},
        }

    # -------------------------------------------------------------------------- events, exposures

    def _record_events(self, body: dict[str, Any]) -> dict[str, int]:
        batch = "events" in body
        events = body["events"] if batch else [body]
        if batch and not 1 <= len(events) <= 10_000:
            raise invalid([{"field": "events", "message": "must hold 1 to 10,000 events"}])
        errors = []
        for i, event in enumerate(events):
            prefix = f"events[{i}]." if batch else ""
            for name in ("experiment_id", "user_id", "event_type"):
                if not event.get(name):
                    errors.append({"field": prefix + name, "message": "is missing"})
            if event.get("experiment_id") and event["experiment_id"] not in self.experiments:
                if not batch:
                    raise not_found("experiment", event["experiment_id"])
                errors.append(
                    {"field": prefix + "experiment_id", "message": "experiment does not exist"}
                )
        if errors:
            raise invalid(errors)
        fresh = 0
        for event in events:
            event_id = event.get("event_id") or self._id()
            if event_id not in self.events:
                self.events[event_id] = event
                fresh += 1
        return {"accepted": fresh, "duplicates": len(events) - fresh}

    def _record_exposures(self, body: dict[str, Any]) -> dict[str, int]:
        exposures = body["exposures"]
        errors = []
        for i, exposure in enumerate(exposures):
            experiment = self.experiments.get(exposure["experiment_id"])
            if experiment is None:
                errors.append(
                    {
                        "field": f"exposures[{i}].experiment_id",
                        "message": "experiment does not exist",
                    }
                )
            elif exposure["variant_id"] not in {v["id"] for v in experiment["variants"]}:
                errors.append(
                    {
                        "field": f"exposures[{i}].variant_id",
                        "message": "the service would serve this user another variant",
                    }
                )
        if errors:
            raise invalid(errors)
        assigned = already = 0
        for exposure in exposures:
            key = (exposure["experiment_id"], exposure["user_id"])
            if key in self.assignments:
                already += 1
                continue
            self.assignments[key] = {
                "experiment_id": key[0],
                "user_id": key[1],
                "variant_id": exposure["variant_id"],
                "variant_name": "?",
                "assigned_at": exposure["timestamp"],
                "in_experiment": True,
                "reason": "assigned",
            }
            self.exposures.append(exposure)
            assigned += 1
        return {
            "accepted": len(exposures),
            "assigned": assigned,
            "already_assigned": already,
            "held_out": 0,
        }

    def _definitions(self, request: httpx.Request) -> httpx.Response:
        document = {
            "experiments": [
                {
                    "id": e["id"],
                    "name": e["name"],
                    "status": e["status"],
                    "variants": [
                        {
                            "id": v["id"],
                            "name": v["name"],
                            "is_control": v["is_control"],
                            "traffic_basis_points": round(v["traffic_percentage"] * 100),
                        }
                        for v in e["variants"]
                    ],
                    "coverage_basis_points": round(e["coverage"] * 100),
                    "audience": e["audience"],
                    "layer": None,
                    "holdout": None,
                    "winner_variant_id": e["winner_variant_id"],
                    "overrides": [
                        {"user_id": o["user_id"], "variant_id": o["variant_id"]}
                        for o in e["overrides"]
                    ],
                }
                for e in self.experiments.values()
            ]
        }
        body = json.dumps(document).encode()
        tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if request.headers.get("If-None-Match") == tag:
            return httpx.Response(304, headers={"ETag": tag})
        return httpx.Response(
            200, content=body, headers={"ETag": tag, "Content-Type": "application/json"}
        )

    # -------------------------------------------------------------------------- the rest

    def _power(self, body: dict[str, Any]) -> dict[str, Any]:
        if "mde" not in body:
            raise invalid([{"field": "mde", "message": "is required"}])
        return {
            "metric": body.get("metric", "conversion"),
            "mde": body["mde"],
            "relative": True,
            "baseline_rate": body.get("baseline_rate"),
            "mean": None,
            "variance": None,
            "alpha": 0.05,
            "power": 0.8,
            "ratio": 1.0,
            "experiment_id": body.get("experiment_id"),
            "traffic": None,
            "users_per_arm": {
                "control": 57756,
                "variant": 57756,
                "total": 115512,
                "control_exact": 57755.64,
                "effect_size": 0.01649,
            },
        }

    def _create_key(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = [name for name in body if name not in ("name", "scopes", "expires_at")]
        if unknown:
            raise invalid([{"field": name, "message": "is not a known field"} for name in unknown])
        key = {
            "id": self._id(),
            "name": body["name"],
            "scopes": sorted(set(body["scopes"])),
            "created_at": NOW,
            "created_by": "API_TOKENS",
            "expires_at": body.get("expires_at"),
            "revoked_at": None,
        }
        self.keys[key["id"]] = key
        self._log("key.created", "key", key["id"], {"name": key["name"]})
        return {**key, "key": "xpk_secret_" + key["id"]}

    @staticmethod
    def _listed(key: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in key.items() if k != "key"}

    def _holdout_results(self, holdout_id: str, event_type: str) -> dict[str, Any]:
        holdout = self._find(self.holdouts, "holdout", holdout_id)
        return {
            "holdout": holdout,
            "event_type": event_type,
            "held_out": {"users": 10, "converted": 1, "conversion_rate": 0.1},
            "exposed": {"users": 190, "converted": 38, "conversion_rate": 0.2},
            "absolute_lift": 0.1,
            "relative_lift": 1.0,
            "z_score": 0.9,
            "p_value": 0.37,
            "confidence_interval": {
                "level": 0.95,
                "method": "newcombe",
                "lower": -0.1,
                "upper": 0.2,
            },
        }


def moment(value: str | None) -> str | None:
    """A results filter as the service echoes it: a bare date as the start of its UTC day."""
    return value if value is None or "T" in value else value + "T00:00:00Z"


def route_of(request: httpx.Request) -> str:
    """The request's path with every segment unquoted: ``/experiments/e1/assignment/a/b``."""
    return "/" + "/".join(segments(request))


def segments(request: httpx.Request) -> list[str]:
    """The request's path segments, each unquoted: an id with a ``/`` stays one segment."""
    raw = request.url.raw_path.split(b"?")[0].decode("ascii")
    return [unquote(p) for p in raw.split("/")[1:]]
