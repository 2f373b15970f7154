"""The request log and request ids, in-process: the app's lines on fd 2, their two formats, the
X-Request-ID round trip, and what must never reach a line (tokens, query strings, user ids)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from dependency_injector import providers
from litestar.testing import TestClient

from adapters.memory.store import MemoryStore
from domain.errors import StoreUnavailable
from entrypoints.config.container import create_container
from entrypoints.config.settings import Settings
from entrypoints.http.app import create_app
from entrypoints.telemetry.logs import JsonFormatter, TextFormatter
from tests.e2e.conftest import AUTH, TOKEN
from tests.factories import experiment_body

ASSIGNMENT = "/experiments/{experiment_id}/assignment/{user_id}"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
ID = r"[A-Za-z0-9._:-]{1,128}"
TEXT_LINE = re.compile(
    rf"^(?P<ts>{STAMP}) (?P<level>INFO|ERROR) experiments\.request (?P<method>[A-Z]+) "
    rf"(?P<route>\S+) (?P<status>\d{{3}}) (?P<ms>\d+\.\d{{3}})ms request_id=(?P<id>{ID})$"
)
GENERATED = re.compile(r"^[0-9a-f]{12}-[0-9a-f]+$")
EXPERIMENT = experiment_body("checkout", primary="buy")
# A user id that, written raw, would start a line of its own; sent percent-encoded.
FORGED = quote("u-1\n2026-11-29T00:00:00.000Z INFO experiments.request GET forged 200", safe="")


def open_client(**settings: Any) -> TestClient:
    container = create_container(Settings(database_url="memory://", api_tokens=(TOKEN,), **settings))
    return TestClient(create_app(container))


def lines_of(capfd: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capfd.readouterr().err.splitlines() if line]


def text_lines(capfd: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    lines = lines_of(capfd)
    parsed = [TEXT_LINE.match(line) for line in lines]
    assert all(parsed), [line for line, match in zip(lines, parsed, strict=True) if not match]
    return [match.groupdict() for match in parsed if match]


def test_a_text_line_per_request_with_the_route_template_and_the_sent_id(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with open_client() as client:
        eid = client.post("/experiments", json=EXPERIMENT, headers=AUTH).json()["id"]
        response = client.get(
            f"/experiments/{eid}/assignment/user-42", headers={**AUTH, "X-Request-ID": "req-1.a:B"}
        )
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] == "req-1.a:B"
    created, line = text_lines(capfd)
    assert (created["method"], created["route"], created["status"]) == ("POST", "/experiments", "201")
    assert line["method"] == "GET"
    assert line["route"] == ASSIGNMENT
    assert line["status"] == "200"
    assert line["id"] == "req-1.a:B"
    assert float(line["ms"]) > 0


def test_json_lines_carry_the_same_fields(capfd: pytest.CaptureFixture[str]) -> None:
    with open_client(log_format="json") as client:
        eid = client.post("/experiments", json=EXPERIMENT, headers=AUTH).json()["id"]
        client.get(f"/experiments/{eid}/assignment/user-42", headers={**AUTH, "X-Request-ID": "abc"})
        client.get("/no/such/route", headers=AUTH)
    lines = [json.loads(line) for line in lines_of(capfd)]
    assert [(x["method"], x["route"], x["status"]) for x in lines] == [
        ("POST", "/experiments", 201),
        ("GET", ASSIGNMENT, 200),
        ("GET", "<unmatched>", 404),
    ]
    for line in lines:
        assert set(line) == {
            "ts", "level", "logger", "msg", "method", "route", "status", "duration_ms", "request_id"
        }
        assert re.fullmatch(STAMP, line["ts"])
        assert (line["level"], line["logger"], line["msg"]) == ("info", "experiments.request", "request")
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert lines[1]["request_id"] == "abc"


@pytest.mark.parametrize(
    "sent",
    [None, "", "has space", "x" * 129, "semi;colon", "quote\"d", "é".encode()],
    ids=["none", "empty", "space", "too-long", "semicolon", "quote", "non-ascii"],
)
def test_an_id_is_generated_when_none_or_an_unsafe_one_is_sent(
    sent: str | bytes | None, capfd: pytest.CaptureFixture[str]
) -> None:
    headers = dict(AUTH) if sent is None else {**AUTH, "X-Request-ID": sent}
    with open_client() as client:
        first = client.get("/experiments", headers=headers).headers["X-Request-ID"]
        second = client.get("/experiments", headers=headers).headers["X-Request-ID"]
    assert GENERATED.match(first) and GENERATED.match(second), (first, second)
    assert first != second
    assert [line["id"] for line in text_lines(capfd)] == [first, second]


def test_every_response_has_an_id_errors_included(capfd: pytest.CaptureFixture[str]) -> None:
    with open_client() as client:
        answers = [
            client.get("/experiments"),  # no token: 401
            client.get("/no/such/route", headers=AUTH),  # 404, before any route
            client.get("/experiments/nope", headers=AUTH),  # 404 from the use case
            client.post("/experiments", content=b"{", headers=AUTH),  # 400
            client.get("/experiments?limit=abc", headers=AUTH),  # 422
            client.delete("/experiments", headers=AUTH),  # 405: no route for the method
            client.get("/health"),
        ]
    ids = [answer.headers.get("X-Request-ID") for answer in answers]
    assert all(ids) and len(set(ids)) == len(ids), ids
    lines = text_lines(capfd)
    sent = [(str(a.status_code), a.headers["X-Request-ID"]) for a in answers]
    assert [(x["status"], x["id"]) for x in lines] == sent
    assert [x["route"] for x in lines] == [
        "/experiments", "<unmatched>", "/experiments/{experiment_id}", "/experiments",
        "/experiments", "<unmatched>", "/health",
    ]


def test_no_token_query_string_or_user_id_reaches_a_line(capfd: pytest.CaptureFixture[str]) -> None:
    with open_client(log_format="json") as client:
        eid = client.post("/experiments", json=EXPERIMENT, headers=AUTH).json()["id"]
        client.get(f"/experiments/{eid}/assignment/secret-user?token=query-secret", headers=AUTH)
        wrong = {"Authorization": "Bearer wrong-s3cret"}
        client.get("/experiments?access_token=query-secret-2", headers=wrong)
        client.get(f"/experiments/{eid}/assignment/{FORGED}", headers=AUTH)
    output = "\n".join(lines_of(capfd))
    for secret in (TOKEN, "wrong-s3cret", "query-secret", "secret-user", eid, "forged"):
        assert secret not in output


def test_a_forged_newline_in_a_user_id_cannot_start_a_line(capfd: pytest.CaptureFixture[str]) -> None:
    with open_client() as client:
        eid = client.post("/experiments", json=EXPERIMENT, headers=AUTH).json()["id"]
        assert client.get(f"/experiments/{eid}/assignment/{FORGED}", headers=AUTH).status_code == 200
    lines = text_lines(capfd)  # each line is a whole request line, none the forged one
    assert [x["route"] for x in lines] == ["/experiments", ASSIGNMENT]


class _BrokenStore(MemoryStore):
    async def get_experiment(self, experiment_id: str) -> Any:
        raise RuntimeError(f"bad row for {experiment_id}")


@pytest.fixture
def experiments_log(capfd: pytest.CaptureFixture[str]) -> Iterator[logging.Handler]:
    """The service's logger writing to (the captured) stderr, as the server configures it."""
    stream = open(2, "w", closefd=False)  # fd 2 itself, where capfd looks  # noqa: SIM115
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("experiments")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        stream.close()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_unexpected_error_is_one_record_with_the_route_and_the_request_id(
    log_format: str, experiments_log: logging.Handler, capfd: pytest.CaptureFixture[str]
) -> None:
    experiments_log.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    settings = Settings(database_url="memory://", api_tokens=(TOKEN,), log_format=log_format)
    container = create_container(settings)
    container.store.override(providers.Object(_BrokenStore()))
    forged = quote("x\n2026-11-29T00:00:00.000Z INFO experiments forged", safe="")
    with TestClient(create_app(container)) as client:
        response = client.get(f"/experiments/{forged}", headers={**AUTH, "X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "boom-1"
    lines = lines_of(capfd)
    assert len(lines) == 2, lines  # the error record, then the request line
    if log_format == "json":
        record, request = (json.loads(line) for line in lines)
        assert record["level"] == "error" and record["logger"] == "experiments"
        assert record["msg"] == "unhandled error on GET /experiments/{experiment_id}"
        assert record["request_id"] == "boom-1"
        assert "RuntimeError: bad row for x\n2026" in record["exc"]  # JSON escaped it
        assert (request["level"], request["status"], request["request_id"]) == ("error", 500, "boom-1")
    else:
        record, request = lines
        assert record.startswith(tuple("0123456789"))
        assert " ERROR experiments unhandled error on GET /experiments/{experiment_id} " in record
        assert " request_id=boom-1 exc=Traceback" in record
        assert "RuntimeError: bad row for x\\n2026" in record
        assert TEXT_LINE.match(request)
        assert " ERROR experiments.request GET /experiments/{experiment_id} 500 " in request


class _UnreachableStore(MemoryStore):
    async def list_experiments(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("ConnectionRefusedError")


def test_a_503_record_names_its_request(
    experiments_log: logging.Handler, capfd: pytest.CaptureFixture[str]
) -> None:
    experiments_log.setFormatter(JsonFormatter())
    container = create_container(Settings(database_url="memory://", api_tokens=(TOKEN,)))
    container.store.override(providers.Object(_UnreachableStore()))
    with TestClient(create_app(container)) as client:
        response = client.get("/experiments", headers={**AUTH, "X-Request-ID": "down-1"})
    assert response.status_code == 503 and response.headers["X-Request-ID"] == "down-1"
    record = json.loads(lines_of(capfd)[0])
    assert record["msg"] == "store unavailable: ConnectionRefusedError"
    assert (record["level"], record["request_id"]) == ("warning", "down-1")
