"""Who enters an experiment, and in which variant: lifecycle, coverage, layers and holdouts.

Every decision is a pure function of ids, seeds and shares, so any client library can reproduce
it (the vectors in docs/assignment-cases.json). Each question hashes the user with a seed of its
own, so the answers are independent of each other and of the variant:

    variant   bucket("{experiment_id}:{user_id}")              (the original hash, unchanged)
    coverage  bucket("coverage:{experiment_id}:{user_id}") < coverage in basis points
    layer     bucket("layer:{layer_seed}:{user_id}") in the experiment's slice of the layer
    holdout   bucket("holdout:{holdout_seed}:{user_id}") < the holdout's share in basis points

where bucket(text) = first 8 bytes of SHA-256(UTF-8 text), big-endian, modulo 10,000.

Were coverage read off the variant's own bucket, a 50% ramp of a 50/50 split would admit the
control's users only; with a hash of its own, raising coverage admits a uniform sample of new
users, each into the variant the variant hash gives them at any coverage, and keeps everyone
admitted before (the property tests in tests/unit/test_eligibility.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain.hashing import BUCKETS, bucket
from domain.layers import Slice, free_slice  # noqa: F401  (part of this room's vocabulary)
from domain.lifecycle import Status


def coverage_bucket(experiment_id: str, user_id: str) -> int:
    return bucket(f"coverage:{experiment_id}:{user_id}")


def layer_bucket(layer_seed: str, user_id: str) -> int:
    return bucket(f"layer:{layer_seed}:{user_id}")


def holdout_bucket(holdout_seed: str, user_id: str) -> int:
    return bucket(f"holdout:{holdout_seed}:{user_id}")


def covered(experiment_id: str, user_id: str, coverage_basis_points: int) -> bool:
    """Whether the user is in the ``coverage_basis_points`` (0..10,000) share of traffic.
    Monotone in the coverage: a user covered at some coverage is covered at every higher one."""
    return coverage_bucket(experiment_id, user_id) < coverage_basis_points


@dataclass(frozen=True, slots=True)
class Holdout:
    """A fixed share of all users kept out of every experiment that opts in."""

    seed: str
    basis_points: int

    def holds(self, user_id: str) -> bool:
        return holdout_bucket(self.seed, user_id) < self.basis_points


# ---------------------------------------------------------------------------------- the decision


class Reason(StrEnum):
    """Why a user is or is not in an experiment; returned with every assignment answer."""

    ASSIGNED = "assigned"  # in the experiment, by the hash (or stored before)
    FORCED = "forced"  # a QA override
    WINNER = "winner"  # the experiment stopped: everyone gets the winner, nothing is stored
    DRAFT = "draft"
    PAUSED = "paused"
    ARCHIVED = "archived"
    AUDIENCE = "audience"  # the attributes do not match the audience
    HOLDOUT = "holdout"
    LAYER = "layer"  # the user's layer bucket is another experiment's
    COVERAGE = "coverage"  # outside the ramp


NOT_STARTED = {Status.DRAFT: Reason.DRAFT, Status.PAUSED: Reason.PAUSED, Status.ARCHIVED: Reason.ARCHIVED}


@dataclass(frozen=True, slots=True)
class Gate:
    """What an experiment asks of a user before the variant hash decides, besides its state."""

    experiment_id: str
    coverage_basis_points: int = BUCKETS
    audience: Any | None = None  # domain.targeting.Audience
    layer_seed: str | None = None
    slice: Slice | None = None
    holdout: Holdout | None = None  # the global holdout, when the experiment opts in

    @classmethod
    def of(cls, experiment: Any) -> Gate | None:
        """The experiment's gate, or None when it admits every user (the common case)."""
        e = experiment
        if e.coverage_basis_points >= BUCKETS and e.audience is None and e.layer is None and e.holdout is None:
            return None
        return cls(
            e.id,
            e.coverage_basis_points,
            e.audience,
            None if e.layer is None else e.layer.seed,
            None if e.layer is None else e.layer.slice,
            None if e.holdout is None else Holdout(e.holdout.seed, e.holdout.basis_points),
        )

    def exclusion(self, user_id: str, attributes: Mapping[str, Any]) -> Reason | None:
        """None when the user enters, else the first reason they do not, in a fixed order:
        audience, holdout, layer, coverage."""
        if self.audience is not None and not self.audience.admits(attributes):
            return Reason.AUDIENCE
        if self.holdout is not None and self.holdout.holds(user_id):
            return Reason.HOLDOUT
        if self.slice is not None and self.layer_seed is not None:
            if not self.slice.holds(layer_bucket(self.layer_seed, user_id)):
                return Reason.LAYER
        if not covered(self.experiment_id, user_id, self.coverage_basis_points):
            return Reason.COVERAGE
        return None
