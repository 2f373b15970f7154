"""Power and duration: how many users a comparison needs, and for a running experiment how many
days that is at the traffic it has had (docs/statistics.md, Power and duration)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from application.ports import Clock
from application.results import ComputeResults
from domain.analysis import AnalysisOverrides
from domain.errors import FieldError, ValidationFailed
from domain.experiment import Experiment
from domain.results import ExperimentResults
from domain.stats.frequentist import ALPHA
from domain.stats.power import (
    POWER,
    SampleSize,
    days_left,
    users_per_arm_means,
    users_per_arm_proportions,
)

Metric = Literal["conversion", "value"]
SECONDS_PER_DAY = 86_400.0
MIN_PACE_SECONDS = 3_600.0
"""A pace needs an hour of traffic: a few minutes' users extrapolated to a day say little."""


@dataclass(frozen=True, slots=True)
class PowerQuestion:
    """What a team plans for; the baseline may be left to a running experiment's control."""

    mde: float
    metric: Metric = "conversion"
    relative: bool = True
    baseline_rate: float | None = None  # conversion
    mean: float | None = None  # value per user
    variance: float | None = None  # of the value per user
    alpha: float = ALPHA
    power: float = POWER
    ratio: float | None = None  # variant users per control user; default 1, or the experiment's split
    experiment_id: str | None = None


@dataclass(frozen=True, slots=True)
class Traffic:
    """A running experiment's pace: users so far and per day since it started."""

    users_so_far: int
    days_running: float | None
    users_per_day: float | None
    users_needed: int  # across every variant, in the experiment's split
    days_left: float | None  # at the pace so far; 0 once reached, None while no pace is known


@dataclass(frozen=True, slots=True)
class PowerAnswer:
    question: PowerQuestion  # as answered: the baseline and ratio filled in
    size: SampleSize
    traffic: Traffic | None = None


class EstimatePower:
    def __init__(self, results: ComputeResults, clock: Clock) -> None:
        self._results, self._clock = results, clock

    async def __call__(self, question: PowerQuestion) -> PowerAnswer:
        q = question
        errors = _range_errors(q)
        if q.experiment_id is None:
            if errors:
                raise ValidationFailed(errors)
            ratio = 1.0 if q.ratio is None else q.ratio
            return PowerAnswer(replace(q, ratio=ratio), _size(q, ratio, errors))
        if q.ratio is not None:
            errors.append(FieldError("ratio", "is the experiment's split when experiment_id is given"))
        # The plain figures are all it reads: no CUPED read (nor its wait while it is filled),
        # no metric's totals (a capped one reads every user's figure) and no scorecard.
        results = await self._results(
            q.experiment_id, overrides=AnalysisOverrides(method="fixed", cuped=False), scorecard=False
        )
        filled = _baseline_of(q, results, errors)
        experiment = results.experiment
        active = [v for v in experiment.variants if v.traffic_basis_points > 0]
        control = experiment.control
        if control.traffic_basis_points == 0 or len(active) < 2:
            errors.append(FieldError("experiment_id", "needs a control and another variant with traffic"))
        if errors:
            raise ValidationFailed(errors)
        # The control needs (1 + r) / r times a constant for a variant of r times its traffic:
        # the least-served variant sets how many users the experiment needs in all.
        least = min((v for v in active if v.id != control.id), key=lambda v: v.traffic_basis_points)
        ratio = least.traffic_basis_points / control.traffic_basis_points
        size = _size(filled, ratio, errors)
        needed = size.control_exact * sum(v.traffic_basis_points for v in active) / control.traffic_basis_points
        traffic = self._traffic(experiment, results, math.ceil(needed - 1e-9))
        return PowerAnswer(replace(filled, ratio=ratio), size, traffic)

    def _traffic(self, experiment: Experiment, results: ExperimentResults, needed: int) -> Traffic:
        so_far = results.total_users
        days = per_day = None
        if experiment.started_at is not None:
            until = experiment.stopped_at or self._clock.now()
            seconds = (until - experiment.started_at).total_seconds()
            days = max(seconds, 0.0) / SECONDS_PER_DAY
            if seconds >= MIN_PACE_SECONDS:
                per_day = so_far / days
        return Traffic(so_far, days, per_day, needed, days_left(needed, so_far, per_day or 0.0))


def _range_errors(q: PowerQuestion) -> list[FieldError]:
    errors = []
    for name in ("alpha", "power"):
        value = getattr(q, name)
        if not (math.isfinite(value) and 0 < value < 1):
            errors.append(FieldError(name, "must be a number between 0 and 1"))
    if not math.isfinite(q.mde) or q.mde == 0:
        errors.append(FieldError("mde", "must be a finite number other than 0"))
    if q.ratio is not None and not (math.isfinite(q.ratio) and q.ratio > 0):
        errors.append(FieldError("ratio", "must be a number above 0"))
    if q.metric == "conversion":
        if q.mean is not None or q.variance is not None:
            errors.append(FieldError("metric", "conversion takes baseline_rate, not mean and variance"))
        if q.baseline_rate is not None and not (math.isfinite(q.baseline_rate) and 0 < q.baseline_rate < 1):
            errors.append(FieldError("baseline_rate", "must be a rate between 0 and 1"))
        elif q.baseline_rate is None and q.experiment_id is None:
            errors.append(FieldError("baseline_rate", "is required (or an experiment_id to take it from)"))
    else:
        if q.baseline_rate is not None:
            errors.append(FieldError("metric", "value takes mean and variance, not baseline_rate"))
        if q.mean is not None and not math.isfinite(q.mean):
            errors.append(FieldError("mean", "must be a finite number"))
        if q.variance is not None and not (math.isfinite(q.variance) and q.variance > 0):
            errors.append(FieldError("variance", "must be a number above 0"))
        if q.experiment_id is None:
            for name in ("mean", "variance"):
                if getattr(q, name) is None:
                    errors.append(FieldError(name, "is required (or an experiment_id to take it from)"))
    return errors


def _baseline_of(q: PowerQuestion, results: ExperimentResults, errors: list[FieldError]) -> PowerQuestion:
    """The question with what it left out taken from the experiment's control so far."""
    control = next(v for v in results.variants if v.variant.is_control)
    if q.metric == "conversion":
        if q.baseline_rate is not None:
            return q
        rate = control.primary_conversion_rate
        if rate is None or not 0 < rate < 1:
            errors.append(FieldError("baseline_rate", "the control has no rate between 0 and 1 yet: give one"))
            return q
        return replace(q, baseline_rate=rate)
    mean = control.value_per_user if q.mean is None else q.mean
    variance = control.value.variance if q.variance is None else q.variance
    if mean is None or variance is None or not variance > 0:
        errors.append(FieldError("mean" if mean is None else "variance", "the control has none yet: give one"))
        return q
    return replace(q, mean=mean, variance=variance)


def _size(q: PowerQuestion, ratio: float, errors: list[FieldError]) -> SampleSize:
    if q.metric == "conversion":
        assert q.baseline_rate is not None
        size = users_per_arm_proportions(
            q.baseline_rate, q.mde, relative=q.relative, alpha=q.alpha, power=q.power, ratio=ratio
        )
    else:
        assert q.mean is not None and q.variance is not None
        size = users_per_arm_means(
            q.mean, q.variance, q.mde, relative=q.relative, alpha=q.alpha, power=q.power, ratio=ratio
        )
    if size is None:  # e.g. a relative change that takes the rate out of (0, 1), or of a mean 0
        raise ValidationFailed([*errors, FieldError("mde", "leaves no comparison to size (the changed rate or mean is out of range)")])
    return size
