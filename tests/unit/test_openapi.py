"""The OpenAPI document describes the responses the service really sends, and only those."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from entrypoints.config.container import create_container
from entrypoints.config.settings import Settings
from entrypoints.http.app import create_app
from entrypoints.http.openapi import PROBLEM_JSON
from entrypoints.http.resources.events import EventBatch, EventBatchIn
from entrypoints.http.resources.experiments import (
    ExperimentIn,
    NewExperiment,
    NewVariant,
    VariantIn,
)

AUTHENTICATED = {401, 403, 429, 503}
WITH_BODY = {400, 413, 415, 422}
# The errors each operation can answer with, as the error table and the handlers send them.
DECLARED = {
    ("get", "/health"): set(),
    ("post", "/experiments"): AUTHENTICATED | WITH_BODY | {409},
    ("get", "/experiments"): AUTHENTICATED | {422},
    ("get", "/experiments/{experiment_id}"): AUTHENTICATED | {404},
    ("get", "/experiments/{experiment_id}/assignment/{user_id}"): AUTHENTICATED | {404, 422},
    ("post", "/events"): AUTHENTICATED | WITH_BODY | {404},
    ("get", "/experiments/{experiment_id}/results"): AUTHENTICATED | {404, 422},
    ("get", "/experiments/{experiment_id}/results/timeseries"): AUTHENTICATED | {404, 422},
    ("get", "/experiments/{experiment_id}/results/breakdown"): AUTHENTICATED | {404, 422},
    ("post", "/keys"): AUTHENTICATED | WITH_BODY,
    ("get", "/keys"): AUTHENTICATED | {422},
    ("get", "/keys/{key_id}"): AUTHENTICATED | {404},
    ("delete", "/keys/{key_id}"): AUTHENTICATED | {404},
    ("get", "/audit"): AUTHENTICATED | {422},
    ("patch", "/experiments/{experiment_id}"): AUTHENTICATED | WITH_BODY | {404, 409},
    ("post", "/experiments/{experiment_id}/assignment/{user_id}"): AUTHENTICATED | WITH_BODY | {404},
    ("put", "/experiments/{experiment_id}/assignment/{user_id}"): AUTHENTICATED | WITH_BODY | {404},
    ("delete", "/experiments/{experiment_id}/assignment/{user_id}"): AUTHENTICATED | {404},
    ("post", "/layers"): AUTHENTICATED | WITH_BODY | {409},
    ("get", "/layers"): AUTHENTICATED,
    ("get", "/layers/{layer_id}"): AUTHENTICATED | {404},
    ("post", "/holdouts"): AUTHENTICATED | WITH_BODY | {409},
    ("get", "/holdouts"): AUTHENTICATED,
    ("get", "/holdouts/{holdout_id}"): AUTHENTICATED | {404},
    ("get", "/holdouts/{holdout_id}/results"): AUTHENTICATED | {404, 422},
    ("post", "/power"): AUTHENTICATED | WITH_BODY | {404},
    ("get", "/definitions"): AUTHENTICATED,
    ("post", "/exposures"): AUTHENTICATED | WITH_BODY,
}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path: Path = tmp_path_factory.mktemp("openapi") / "unused.db"
    settings = Settings(database_url=f"sqlite:///{path}", api_tokens=("t",))
    return create_app(create_container(settings)).openapi_schema.to_schema()


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def test_the_document_has_exactly_the_operations_described_here(document: dict[str, Any]) -> None:
    assert set(operations(document)) == set(DECLARED)


@pytest.mark.parametrize("key", sorted(DECLARED), ids=" ".join)
def test_every_operation_is_tagged_summarised_and_described(document: dict[str, Any], key: tuple[str, str]) -> None:
    operation = operations(document)[key]
    known = {tag["name"] for tag in document["tags"]}
    assert operation["tags"] and set(operation["tags"]) <= known
    summary = operation["summary"]
    assert summary.endswith(".") and summary.count(". ") == 0, summary  # one sentence
    assert len(operation.get("description", "")) > len(summary)


@pytest.mark.parametrize("key", sorted(DECLARED), ids=" ".join)
def test_every_declared_error_is_problem_json_and_nothing_else_is_documented(
    document: dict[str, Any], key: tuple[str, str]
) -> None:
    responses = operations(document)[key]["responses"]
    errors = {int(status) for status in responses if int(status) >= 400}
    if key == ("get", "/health"):  # its 503 is the health body itself, not a problem
        assert errors == {503}
        assert set(responses["503"]["content"]) == {"application/json"}
        return
    assert errors == DECLARED[key]
    for status in errors:
        content = responses[str(status)]["content"]
        assert set(content) == {PROBLEM_JSON}, (status, content)
        media = content[PROBLEM_JSON]
        assert media["schema"] == {"$ref": "#/components/schemas/ProblemOut"}
        (example,) = media["examples"].values()
        problem = example["value"]
        assert problem["status"] == status and problem["title"] and problem["detail"]
    if 401 in errors:
        assert "WWW-Authenticate" in responses["401"]["headers"]
    if 429 in errors:
        assert "Retry-After" in responses["429"]["headers"]


def test_no_response_shows_litestars_own_error_shape(document: dict[str, Any]) -> None:
    """Litestar documents a 400 ``{"status_code", "detail", "extra"}`` that the service never sends."""
    for key, operation in operations(document).items():
        for status, response in operation["responses"].items():
            for media in response.get("content", {}).values():
                assert "status_code" not in media["schema"].get("properties", {}), (key, status)


def test_a_created_experiment_documents_its_location(document: dict[str, Any]) -> None:
    created = operations(document)[("post", "/experiments")]["responses"]["201"]
    assert created["headers"]["Location"]["required"] is True


def test_the_request_schemas_carry_the_domains_limits(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    experiment = schemas["NewExperiment"]["properties"]
    assert (experiment["name"]["minLength"], experiment["name"]["maxLength"]) == (1, 200)
    assert (experiment["variants"]["minItems"], experiment["variants"]["maxItems"]) == (2, 20)
    percentage = schemas["NewVariant"]["properties"]["traffic_percentage"]
    assert (percentage["minimum"], percentage["maximum"]) == (0, 100)
    event = schemas["EventIn"]["properties"]
    assert (event["user_id"]["minLength"], event["user_id"]["maxLength"]) == (1, 256)
    assert event["event_type"]["maxLength"] == 100
    batch = schemas["EventBatch"]["properties"]["events"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 10_000)


@pytest.mark.parametrize(
    ("decoded", "documented"),
    [(ExperimentIn, NewExperiment), (VariantIn, NewVariant), (EventBatchIn, EventBatch)],
)
def test_the_documented_request_has_the_fields_the_decoder_reads(decoded: type, documented: type) -> None:
    """The decoder reads types alone (the domain names every broken rule); the document shows
    the same body with its limits. They must not drift apart."""

    def shape(struct: type) -> list[tuple[str, bool]]:
        return [(f.name, f.required) for f in msgspec.structs.fields(struct)]

    assert shape(decoded) == shape(documented)
