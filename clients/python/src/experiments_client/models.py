"""What the service answers, endpoint by endpoint, as typed values.

Every struct ignores fields it does not know (``forbid_unknown_fields=False``), and every field
added to the contract after its base has a default: a newer service that adds a field never
breaks an older client, and an older one that lacks a later field still decodes. Statuses,
reasons and methods are plain ``str`` rather than literals for the same reason: a new status
must not make an experiment unreadable.

Timestamps are ``datetime`` (the service sends RFC 3339 in UTC, decoded timezone-aware), so
they compare and subtract without parsing; ``msgspec.to_builtins`` turns them back into text.
Numbers the service cannot define for the data (a p-value with no users) are ``None``.
Required fields come first in each struct, as msgspec needs; fields are read by name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

# ------------------------------------------------------------------------------ health


class Health(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    status: str  # "ok", or "unavailable" (a 503) when the service cannot reach its store


# ------------------------------------------------------------------------------ experiments


class Variant(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    id: str
    name: str
    traffic_percentage: float  # 0 to 100
    is_control: bool


class Override(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """A QA override: the user is served this variant, and never counted in results."""

    user_id: str
    variant_id: str
    forced_at: datetime | None = None


class LayerSlice(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The buckets ``[start, end)`` of the layer (0..10,000) the experiment owns."""

    id: str  # the layer's
    start: int
    end: int


class Prior(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """A normal prior on the relative effect (0.1 is +10%)."""

    mean: float
    sd: float


class Analysis(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """How results are read unless a request says otherwise (docs/statistics.md)."""

    method: str = "fixed"  # fixed, sequential or bayesian
    sequential_tuning_users: int = 10_000
    prior: Prior | None = None
    correction: str = "holm"  # holm or bh
    cuped: bool = False  # results carry the comparisons adjusted by the pre-period


class Experiment(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    id: str
    name: str
    created_at: datetime
    variants: list[Variant]
    description: str | None = None
    primary_event_type: str | None = None
    status: str = "running"  # draft, running, paused, stopped, archived
    coverage: float = 100.0  # percentage of eligible traffic that enters
    audience: dict[str, Any] | None = None  # the rule as the experiment holds it
    layer: LayerSlice | None = None
    holdout_id: str | None = None
    winner_variant_id: str | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    overrides: list[Override] = []
    analysis: Analysis | None = None


class ExperimentPage(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    items: list[Experiment]
    total: int  # every experiment, not just this page's


# ------------------------------------------------------------------------------ assignments


class Assignment(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """A user's variant. ``assigned_at`` is None when nothing is stored: see ``reason``."""

    experiment_id: str
    user_id: str
    variant_id: str
    variant_name: str
    assigned_at: datetime | None = None
    in_experiment: bool = True
    # assigned, forced, winner, draft, paused, archived, audience, holdout, layer, coverage
    reason: str = "assigned"


# ------------------------------------------------------------------------------ events, exposures


class TrackResult(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The events are durably stored; a known ``event_id`` counts as a duplicate."""

    accepted: int
    duplicates: int = 0


class ExposureResult(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The exposures are stored: ``accepted`` is ``assigned`` + ``already_assigned`` +
    ``held_out``."""

    accepted: int
    assigned: int = 0
    already_assigned: int = 0  # the user's first assignment stays
    held_out: int = 0


# ------------------------------------------------------------------------------ results


class Filters(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The filters applied, as the service read them (a bare date as its UTC day)."""

    start_date: datetime | None = None
    end_date: datetime | None = None
    event_type: str | None = None
    variant_id: str | None = None
    primary_event_type: str | None = None


class SequentialSrm(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The sample-ratio check that stays valid however often it is read."""

    log_bayes_factor: float | None = None
    p_value: float | None = None
    mismatch: bool = False


class Srm(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """Sample-ratio mismatch: users per variant against the configured split."""

    chi_square: float | None = None
    p_value: float | None = None
    mismatch: bool = False
    sequential: SequentialSrm | None = None


class Summary(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    total_users: int
    total_events: int
    srm: Srm = Srm()


class VariantResult(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    variant_id: str
    variant_name: str
    is_control: bool
    users: int
    events: int
    unique_users_with_events: int
    event_counts: dict[str, int]
    primary_event_count: int
    primary_unique_users: int
    primary_conversion_rate: float | None = None
    value_sum: float | None = None
    value_per_user: float | None = None


class Interval(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """An interval of a difference: confidence (``method`` newcombe or welch, or None for a
    confidence sequence) or credible; its bounds None when undefined."""

    level: float
    lower: float | None = None
    upper: float | None = None
    method: str | None = None


class Sequential(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The always-valid read-out of ``method=sequential``."""

    confidence_interval: Interval
    tuning_users: int
    absolute_lift: float | None = None
    p_value: float | None = None
    significant: bool = False
    p_value_adjusted: float | None = None  # the conversion's only: Holm over the comparisons


class Loss(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    if_shipped: float | None = None
    if_kept: float | None = None


class ExpectedLoss(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    absolute: Loss
    relative: Loss


class Posterior(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    credible_interval: Interval
    mean: float | None = None


class Bayesian(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The read-out of ``method=bayesian``."""

    expected_loss: ExpectedLoss
    absolute_lift: Posterior
    relative_lift: Posterior
    prior: str  # which model was used ("flat", or the normal prior)
    chance_to_beat_control: float | None = None


class Cuped(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """A comparison adjusted by the users' pre-period (``cuped=true``); with no pre-period data
    ``theta`` is None and the figures are the unadjusted ones."""

    confidence_interval: Interval
    theta: float | None = None
    variance_reduction: float | None = None
    absolute_lift: float | None = None
    relative_lift: float | None = None
    statistic: float | None = None
    p_value: float | None = None
    significant: bool = False
    p_value_adjusted: float | None = None  # the conversion's only
    sequential: Sequential | None = None  # with method=sequential: the adjusted sequence
    bayesian: Bayesian | None = None  # with method=bayesian: the adjusted arms' posterior


class ValueComparison(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The value per user against the control: a Welch t-test."""

    confidence_interval: Interval
    absolute_lift: float | None = None
    relative_lift: float | None = None
    t_statistic: float | None = None
    p_value: float | None = None
    significant: bool = False
    sequential: Sequential | None = None
    bayesian: Bayesian | None = None
    cuped: Cuped | None = None


class Comparison(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """A variant against the control: a two-proportion z-test and the value's t-test."""

    variant_id: str
    baseline_variant_id: str
    confidence_interval: Interval
    absolute_lift: float | None = None
    relative_lift: float | None = None
    z_score: float | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    significant: bool = False
    value: ValueComparison | None = None
    sequential: Sequential | None = None
    bayesian: Bayesian | None = None
    cuped: Cuped | None = None


class Results(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    experiment: Experiment
    filters: Filters
    summary: Summary
    variants: list[VariantResult]
    comparisons: list[Comparison]
    analysis: Analysis | None = None  # how these results were read


# ------------------------------------------------------------------------------ power


class SampleSize(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    control: int
    variant: int
    total: int
    control_exact: float
    effect_size: float


class Traffic(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    users_so_far: int
    users_needed: int
    days_running: float | None = None
    users_per_day: float | None = None  # None until the experiment has run an hour
    days_left: float | None = None


class PowerResult(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    metric: str
    mde: float
    relative: bool
    alpha: float
    power: float
    ratio: float
    users_per_arm: SampleSize
    baseline_rate: float | None = None
    mean: float | None = None
    variance: float | None = None
    experiment_id: str | None = None
    traffic: Traffic | None = None


# ------------------------------------------------------------------------------ keys, audit


class Key(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """An API key. ``key``, the secret, is set only in the answer that created it (the service
    keeps a digest alone); the repr never shows it, so a logged key leaks nothing."""

    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    key: str | None = None

    def __repr__(self) -> str:
        secret = "" if self.key is None else ", key='…'"
        return (
            f"Key(id={self.id!r}, name={self.name!r}, scopes={self.scopes!r}, "
            f"revoked_at={self.revoked_at!r}{secret})"
        )


class KeyPage(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    items: list[Key]
    total: int


class AuditTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    type: str  # experiment or key
    id: str


class AuditEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    id: str
    at: datetime
    actor: str  # API_TOKENS, a key's name, or jwt:<sub>
    action: str  # experiment.created, experiment.changed, key.created, key.revoked
    target: AuditTarget
    details: dict[str, Any] = {}


class AuditPage(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    items: list[AuditEntry]
    total: int


# ------------------------------------------------------------------------------ layers, holdouts


class LayerExperiment(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    experiment_id: str
    start: int
    end: int


class Layer(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    id: str
    name: str
    seed: str
    created_at: datetime
    experiments: list[LayerExperiment] = []
    free_percentage: float = 100.0


class LayerList(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    items: list[Layer]


class Holdout(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    id: str
    name: str
    seed: str
    percentage: float
    created_at: datetime


class HoldoutList(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    items: list[Holdout]


class Group(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    users: int
    converted: int
    conversion_rate: float | None = None


class HoldoutResults(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The held-out users against everyone exposed, on one event type."""

    holdout: Holdout
    event_type: str
    held_out: Group
    exposed: Group
    confidence_interval: Interval
    absolute_lift: float | None = None  # exposed rate minus held-out rate
    relative_lift: float | None = None
    z_score: float | None = None
    p_value: float | None = None
