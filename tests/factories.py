"""Valid request bodies and domain experiments, built in one place: a test names what matters to
it (a name, a split, a primary event type) and takes the rest as given. A test about the shape of
a body or an experiment itself (a malformed variant, every field and its value, the rules of
``Experiment.create``) writes it out instead."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from domain.experiment import Experiment, VariantDraft
from tests.fakes import SequentialIds

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


T0 = datetime(2026, 11, 1, tzinfo=UTC)
"""When ``an_experiment`` is created unless told otherwise."""


def variant_drafts(shares: Sequence[float], control: int | None = None) -> list[VariantDraft]:
    """Variants ``v0``, ``v1``, ... with these traffic shares; the one at index ``control``
    marked the control, else none (so the first one is)."""
    return [VariantDraft(f"v{i}", s, True if i == control else None) for i, s in enumerate(shares)]


def an_experiment(
    name: str = "exp",
    shares: Sequence[float] = (50, 50),
    *,
    primary: str | None = "buy",
    description: str | None = None,
    control: int | None = None,
    ids: str | Callable[[], str] | None = None,
    created_at: datetime = T0,
    **fields: Any,
) -> Experiment:
    """A valid domain experiment, as ``Experiment.create`` builds it, with ``variant_drafts(shares,
    control)``, primary event type ``buy`` unless told (None: none). ``ids``: the prefix of its
    sequential ids (its ``name`` when None) or a function giving them; ``fields``: more of
    ``Experiment.create``'s arguments (status, coverage, audience)."""
    return Experiment.create(
        name=name,
        description=description,
        primary_event_type=primary,
        variants=variant_drafts(shares, control),
        new_id=ids if callable(ids) else SequentialIds(name if ids is None else ids).new_id,
        created_at=created_at,
        **fields,
    )

