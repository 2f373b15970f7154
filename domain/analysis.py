"""How an experiment's results are read: the method of inference and its settings.

An experiment carries a default (``analysis`` at creation or in a change); a results request may
ask for another method or settings for itself (docs/statistics.md). The fixed-horizon figures of
the base contract are always there; a method adds its own read-out beside them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from domain.errors import FieldError, ValidationFailed
from domain.metrics import Direction, Metric, Role, parse_metrics
from domain.stats.bayesian import NormalPrior
from domain.stats.frequentist import benjamini_hochberg_adjust, holm_adjust
from domain.stats.sequential import DEFAULT_TUNING_USERS
from domain.targeting import MAX_ATTRIBUTE_LENGTH

MIN_TUNING_USERS, MAX_TUNING_USERS = 100, 1_000_000_000
MAX_PRIOR_SD = 100.0  # a relative effect's sd of 100 (10,000%) is already flat for any data
MAX_DIMENSIONS = 5  # attributes kept with each assignment for breakdowns (domain/breakdown.py)


class Correction(StrEnum):
    """How p-values are adjusted for testing several variants against the control."""

    HOLM = "holm"  # Holm-Bonferroni: the chance of any false winner (family-wise error) ≤ alpha
    BH = "bh"  # Benjamini-Hochberg: the expected share of false winners among winners ≤ alpha


KEYS = ("method", "sequential_tuning_users", "prior", "correction", "metrics", "cuped", "dimensions")
"""An analysis's settings, as its JSON form names them."""


class Method(StrEnum):
    FIXED = "fixed"  # a test at one planned horizon: valid only when read once
    SEQUENTIAL = "sequential"  # confidence sequences: valid at every look
    BAYESIAN = "bayesian"  # chance to beat the control and expected loss


@dataclass(frozen=True, slots=True)
class Analysis:
    method: Method = Method.FIXED
    sequential_tuning_users: int = DEFAULT_TUNING_USERS
    prior: NormalPrior | None = None  # on the relative effect; None: flat
    correction: Correction = Correction.HOLM  # of the fixed-horizon p_value_adjusted
    metrics: tuple[Metric, ...] = ()  # the scorecard's rows (domain/metrics.py); none: no scorecard
    cuped: bool = False  # adjust the primary conversion and value by the pre-period (domain/stats/cuped.py)
    # The attributes stored with each assignment from now on, that results may be split by.
    dimensions: tuple[str, ...] = ()

    def correct(self, p_values: Sequence[float | None]) -> list[float | None]:
        """The fixed-horizon p-values of a family, adjusted by the correction this analysis asks
        for: Holm, or Benjamini-Hochberg."""
        adjust = benjamini_hochberg_adjust if self.correction is Correction.BH else holm_adjust
        return adjust(p_values)

    def primary_direction(self, primary: str | None) -> Direction:
        """The desired direction of the primary event type: a primary metric on it says; else up."""
        for metric in self.metrics:
            if metric.event_type == primary and metric.role is Role.PRIMARY:
                return metric.direction
        return Direction.INCREASE

    def document(self) -> dict[str, Any]:
        return {
            "method": self.method.value,
            "sequential_tuning_users": self.sequential_tuning_users,
            "prior": None if self.prior is None else {"mean": self.prior.mean, "sd": self.prior.sd},
            "correction": self.correction.value,
            "metrics": [m.document() for m in self.metrics],
            "cuped": self.cuped,
            "dimensions": list(self.dimensions),
        }

    @classmethod
    def parse(cls, value: Any, where: str = "analysis") -> Analysis:
        """An analysis from its JSON form (every key optional); each invalid value is named."""
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise ValidationFailed([FieldError(where, "must be an object")])
        unknown = set(value) - set(KEYS)
        errors = [FieldError(f"{where}.{k}", "is not a setting of the analysis") for k in sorted(unknown)]
        prior = value.get("prior")
        prior_mean = prior_sd = None
        if prior is not None:
            if isinstance(prior, dict) and set(prior) <= {"mean", "sd"}:
                prior_sd = prior.get("sd")
                if prior_sd is None:
                    errors.append(FieldError(f"{where}.prior.sd", "is required with a prior"))
                else:
                    prior_mean = prior.get("mean")
            else:
                errors.append(FieldError(f"{where}.prior", 'must be null or {"mean": number, "sd": number}'))
        try:
            analysis = cls().with_settings(
                method=value.get("method"),
                tuning_users=value.get("sequential_tuning_users"),
                prior_mean=prior_mean,
                prior_sd=prior_sd,
                correction=value.get("correction"),
                cuped=value.get("cuped"),
            )
        except ValidationFailed as exc:  # named by their settings: here, by their place in the body
            places = {"prior_mean": "prior.mean", "prior_sd": "prior.sd", **{k: k for k in KEYS}}
            errors.extend(exc.renamed({k: f"{where}.{v}" for k, v in places.items()}).errors)
        metrics = parse_metrics(value.get("metrics"), f"{where}.metrics", errors)
        dimensions = parse_dimensions(value.get("dimensions"), f"{where}.dimensions", errors)
        if errors:
            raise ValidationFailed(errors)
        return replace(analysis, metrics=metrics, dimensions=dimensions)

    def with_settings(
        self,
        *,
        method: Any = None,
        tuning_users: Any = None,
        prior_mean: Any = None,
        prior_sd: Any = None,
        correction: Any = None,
        cuped: Any = None,
    ) -> Analysis:
        """This analysis with the settings given (None keeps one); errors name the settings as a
        results query does (``method``, ``sequential_tuning_users``, ``prior_mean``, ...)."""
        errors: list[FieldError] = []
        new = self
        if method is not None:
            try:
                new = replace(new, method=Method(method))
            except ValueError:
                errors.append(FieldError("method", f"must be one of {', '.join(m.value for m in Method)}"))
        if correction is not None:
            try:
                new = replace(new, correction=Correction(correction))
            except ValueError:
                errors.append(FieldError("correction", f"must be one of {', '.join(c.value for c in Correction)}"))
        if cuped is not None:
            if isinstance(cuped, bool):
                new = replace(new, cuped=cuped)
            else:
                errors.append(FieldError("cuped", "must be true or false"))
        if tuning_users is not None:
            if isinstance(tuning_users, bool) or not isinstance(tuning_users, int) or not (
                MIN_TUNING_USERS <= tuning_users <= MAX_TUNING_USERS
            ):
                errors.append(
                    FieldError(
                        "sequential_tuning_users",
                        f"must be a whole number of users from {MIN_TUNING_USERS} to {MAX_TUNING_USERS:,}",
                    )
                )
            else:
                new = replace(new, sequential_tuning_users=tuning_users)
        if prior_sd is not None:
            mean = 0.0 if prior_mean is None else prior_mean
            if not _number(mean) or abs(mean) > MAX_PRIOR_SD:
                errors.append(FieldError("prior_mean",
                                         f"must be a finite number from -{MAX_PRIOR_SD:g} to {MAX_PRIOR_SD:g}"))
            elif not _number(prior_sd) or not 0 < prior_sd <= MAX_PRIOR_SD:
                errors.append(FieldError("prior_sd",
                                         f"must be a number above 0 and at most {MAX_PRIOR_SD:g}"))
            else:
                new = replace(new, prior=NormalPrior(mean=float(mean), sd=float(prior_sd)))
        elif prior_mean is not None:
            errors.append(FieldError("prior_sd", "is required with prior_mean"))
        if errors:
            raise ValidationFailed(errors)
        return new


@dataclass(frozen=True, slots=True)
class AnalysisOverrides:
    """A results request's settings over its experiment's analysis, named as the query names
    them; each None keeps the experiment's."""

    method: str | None = None
    sequential_tuning_users: int | None = None
    prior_mean: float | None = None
    prior_sd: float | None = None
    correction: str | None = None
    cuped: bool | None = None

    def over(self, analysis: Analysis) -> Analysis:
        """``analysis`` (an experiment's) with these settings; every invalid one is named
        (ValidationFailed). CUPED may be asked for only of an experiment that keeps its users'
        pre-periods (``analysis.cuped``): there is nothing to adjust by otherwise."""
        read = self._settings(analysis)
        if read.cuped and not analysis.cuped:
            raise ValidationFailed([FieldError("cuped", (
                "this experiment does not keep its users' pre-periods: set its analysis.cuped to true "
                "first; the next fold fills them from the events already stored"
            ))])
        return read

    def _settings(self, analysis: Analysis) -> Analysis:
        return analysis.with_settings(
            method=self.method,
            tuning_users=self.sequential_tuning_users,
            prior_mean=self.prior_mean,
            prior_sd=self.prior_sd,
            correction=self.correction,
            cuped=self.cuped,
        )

    def errors(self) -> list[FieldError]:
        """What is wrong with these settings whatever analysis they apply to."""
        try:
            self._settings(Analysis())
        except ValidationFailed as exc:
            return list(exc.errors)
        return []


def parse_dimensions(value: Any, where: str, errors: list[FieldError]) -> tuple[str, ...]:
    """Up to MAX_DIMENSIONS distinct attribute names; None: none."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_DIMENSIONS:
        errors.append(FieldError(where, f"must be a list of at most {MAX_DIMENSIONS} attribute names"))
        return ()
    found: list[str] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_ATTRIBUTE_LENGTH:
            errors.append(FieldError(f"{where}[{i}]", f"must be an attribute name of 1 to {MAX_ATTRIBUTE_LENGTH} characters"))
        elif "\x00" in name:
            errors.append(FieldError(f"{where}[{i}]", "must not contain the NUL character"))
        elif name in found:
            errors.append(FieldError(f"{where}[{i}]", f"names {name!r} twice"))
        else:
            found.append(name)
    return tuple(found)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
