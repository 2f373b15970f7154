"""The split: validation of a client's request, and the hash that places users on it."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from domain.errors import ValidationFailed
from domain.experiment import (
    BUCKETS,
    Experiment,
    VariantDraft,
    bucket_of,
    percentage_to_basis_points,
)
from tests.fakes import SequentialIds

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def make(*shares: float, controls: tuple[int, ...] = (), **kwargs) -> Experiment:
    drafts = [VariantDraft(f"v{i}", share, True if i in controls else None) for i, share in enumerate(shares)]
    return Experiment.create(
        name=kwargs.get("name", "exp"),
        description=kwargs.get("description"),
        primary_event_type=kwargs.get("primary_event_type"),
        variants=drafts,
        new_id=SequentialIds().new_id,
        created_at=NOW,
    )


def fields_of(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[str]:
    return [e.field for e in exc.value.errors]


def test_the_hash_is_the_documented_sha256() -> None:
    digest = hashlib.sha256(b"exp-1:user-42").digest()
    assert bucket_of("exp-1", "user-42") == int.from_bytes(digest[:8], "big") % 10_000
    # A pinned vector, so a change of the hash cannot pass unnoticed (it would move every user).
    assert bucket_of("checkout-button-color", "u-123") == 1352


@pytest.mark.parametrize(
    ("value", "expected"),
    [(50, 5000), (33.33, 3333), (0.01, 1), (0, 0), (100, 10000), (12.5, 1250),
     (33.333, None), (0.1 + 0.2, None), (float("nan"), None), (float("inf"), None)],
)
def test_basis_points_are_exact_or_refused(value: float, expected: int | None) -> None:
    assert percentage_to_basis_points(value) == expected


def test_first_variant_is_the_control_when_none_is_marked() -> None:
    experiment = make(50, 50)
    assert [v.is_control for v in experiment.variants] == [True, False]
    assert experiment.control.name == "v0"


def test_a_marked_control_is_kept() -> None:
    assert make(20, 30, 50, controls=(2,)).control.name == "v2"


@pytest.mark.parametrize(
    ("shares", "field"),
    [
        ((100,), "variants"),
        ((5,) * 20 + (0,), "variants"),
        ((50, 49), "variants"),
        ((50, 50.001), "variants[1].traffic_percentage"),
        ((-1, 101), "variants[0].traffic_percentage"),
        ((150, -50), "variants[0].traffic_percentage"),
    ],
)
def test_invalid_splits_name_the_field(shares: tuple[float, ...], field: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        make(*shares)
    assert field in fields_of(exc)


def test_every_broken_rule_is_reported_at_once() -> None:
    with pytest.raises(ValidationFailed) as exc:
        Experiment.create(
            name=" ",
            description=None,
            primary_event_type="",
            variants=[VariantDraft("a", 50, True), VariantDraft("a", 40, True)],
            new_id=SequentialIds().new_id,
            created_at=NOW,
        )
    assert fields_of(exc) == [
        "name", "primary_event_type", "variants[1].name", "variants", "variants[1].is_control",
    ]


def test_long_names_are_refused() -> None:
    with pytest.raises(ValidationFailed) as exc:
        make(50, 50, name="x" * 201)
    assert fields_of(exc) == ["name"]
    assert make(50, 50, name="x" * 200).name == "x" * 200


splits = st.lists(st.integers(0, BUCKETS), min_size=1, max_size=19).map(
    lambda cuts: [b - a for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), BUCKETS], strict=True)]
)


@given(splits)
@settings(max_examples=200, deadline=None)
def test_every_bucket_maps_to_one_variant_and_shares_match_to_the_bucket(basis_points: list[int]) -> None:
    if len(basis_points) < 2:
        basis_points = [*basis_points, 0]
    experiment = make(*(bp / 100 for bp in basis_points))
    owners = Counter(experiment.variant_for_bucket(b).id for b in range(BUCKETS))
    assert sum(owners.values()) == BUCKETS
    for variant, bp in zip(experiment.variants, basis_points, strict=True):
        assert owners[variant.id] == bp  # a 0% variant owns no bucket at all


@given(st.text(min_size=1, max_size=50), st.text(min_size=1, max_size=50))
def test_bucket_is_in_range_and_deterministic(experiment_id: str, user_id: str) -> None:
    b = bucket_of(experiment_id, user_id)
    assert 0 <= b < BUCKETS
    assert b == bucket_of(experiment_id, user_id)


def test_split_is_fair_over_many_users() -> None:
    experiment = make(20, 30, 0, 50)
    counts = Counter(experiment.variant_for_user(f"user-{i}").name for i in range(20_000))
    assert counts["v2"] == 0
    observed = [counts["v0"], counts["v1"], counts["v3"]]
    assert chisquare(observed, [4000, 6000, 10000]).pvalue > 0.001
