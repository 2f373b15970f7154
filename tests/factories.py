"""Valid request bodies, built in one place: a test names what matters to it (a name, a split,
a primary event type) and takes the rest as given. A test about the shape of a body itself (a
malformed variant, every field and its value) writes that body out instead."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import httpx

Split = Sequence[tuple[str, float]]
"""The variants of an experiment, in order: ``(name, traffic_percentage)`` each."""

HALVES: Split = (("a", 50), ("b", 50))


def variants(split: Split) -> list[dict[str, Any]]:
    """The ``variants`` of a request body: none marked the control, so the first one is."""
    return [{"name": name, "traffic_percentage": share} for name, share in split]


def experiment_body(
    name: str | None = None, split: Split = HALVES, primary: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A valid ``POST /experiments`` body; without a ``name``, one no other experiment has.
    ``primary``: its primary event type, left out when None; ``extra``: more fields, as sent."""
    body: dict[str, Any] = {
        "name": f"x-{secrets.token_hex(4)}" if name is None else name,
        "variants": variants(split),
        **extra,
    }
    if primary is not None:
        body["primary_event_type"] = primary
    return body


def create_experiment(
    client: httpx.Client, name: str | None = None, split: Split = HALVES, primary: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Create ``experiment_body(...)`` through ``client`` (and its credentials); the experiment."""
    response = client.post("/experiments", json=experiment_body(name, split, primary, **extra))
    assert response.status_code == 201, response.text
    return response.json()


async def create_experiment_async(
    client: httpx.AsyncClient,
    name: str | None = None,
    split: Split = HALVES,
    primary: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The same through an async client."""
    response = await client.post("/experiments", json=experiment_body(name, split, primary, **extra))
    assert response.status_code == 201, response.text
    return response.json()
