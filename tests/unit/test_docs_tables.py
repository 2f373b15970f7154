"""docs/api.md held to the code: its scope table to the routes the app serves, its audit actions
to the ones the service writes."""

from __future__ import annotations

import re
from pathlib import Path

from domain.audit import ACTIONS
from entrypoints.config.container import create_container
from entrypoints.config.settings import Settings
from entrypoints.http.app import create_app
from entrypoints.http.security.bearer import PUBLIC

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ROUTE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`")


def documented_scopes() -> dict[tuple[str, str], str]:
    section = DOC.read_text(encoding="utf-8").split("## Scopes", 1)[1].split("\n## ", 1)[0]
    table: dict[tuple[str, str], str] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        routes, scope = [cell.strip() for cell in line.strip().strip("|").split("|")]
        declared = re.search(r"`(\w+)`", scope)
        for method, path in ROUTE.findall(routes):
            assert (method, path) not in table, f"{method} {path} has two rows"
            table[(method, path)] = declared.group(1) if declared else PUBLIC
    return table


def served_scopes() -> dict[tuple[str, str], str]:
    settings = Settings(database_url="memory://", cache_url="memory://", api_tokens=("t",), metrics_token_required=True)
    app = create_app(create_container(settings))
    served: dict[tuple[str, str], str] = {}
    for route in app.routes:
        # The docs' own files and Litestar's routes (the OpenAPI document, OPTIONS) are not the API.
        if route.path.startswith("/schema"):
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        path = path.replace("{experiment_id}", "{id}").replace("{layer_id}", "{id}")
        path = path.replace("{holdout_id}", "{id}").replace("{key_id}", "{id}")
        for handler in route.route_handlers:
            if handler.fn.__module__.startswith("litestar."):
                continue
            for method in handler.http_methods:
                served[(method, path)] = handler.opt["scope"]
    return served


def test_the_scope_table_lists_every_route_with_the_scope_it_declares() -> None:
    assert documented_scopes() == served_scopes()


def test_the_audit_actions_documented_are_the_ones_the_service_writes() -> None:
    section = DOC.read_text(encoding="utf-8").split("## `GET /audit`", 1)[1].split("\n## ", 1)[0]
    listed = section.split("optional filters `action` (", 1)[1].split(";", 1)[0]
    assert set(re.findall(r"`([a-z]+\.[a-z]+)`", listed)) == ACTIONS
