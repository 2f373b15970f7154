"""Power and duration: users a comparison needs, and days left for a running experiment."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from application.power import EstimatePower, PowerAnswer, PowerQuestion
from domain.keys import READ
from domain.stats.frequentist import ALPHA
from domain.stats.power import POWER
from entrypoints.http import openapi
from entrypoints.http.decoding import StrictDTO
from entrypoints.http.wire import doc


class PowerIn(msgspec.Struct):
    """A comparison to plan: the effect to detect, and the metric's baseline (or the experiment
    to take it from, with its traffic so far)."""

    mde: Annotated[float, doc("Minimum detectable effect: relative (0.05 is +5%) unless `relative` is false.", 0.05)]
    metric: Annotated[Literal["conversion", "value"], doc("A conversion rate, or a value per user.", "conversion")] = "conversion"
    relative: Annotated[bool, doc("Whether `mde` is relative to the baseline (default) or absolute.", True)] = True
    baseline_rate: Annotated[float | None, doc("conversion: the control's rate, in (0, 1); default: the experiment's control so far.", 0.1)] = None
    mean: Annotated[float | None, doc("value: the control's mean per user; default: the experiment's control so far.", 2.5)] = None
    variance: Annotated[float | None, doc("value: the per-user variance; default: the experiment's control so far.", 90.0)] = None
    alpha: Annotated[float, doc("Two-sided significance level.", ALPHA)] = ALPHA
    power: Annotated[float, doc("The chance to detect an effect of the MDE.", POWER)] = POWER
    ratio: Annotated[float | None, doc("Variant users per control user (default 1); with an experiment, its split.", 1.0)] = None
    experiment_id: Annotated[str | None, doc("A running experiment: baseline from its control, ratio from its split, and the days left at its pace.")] = None


class SizeOut(msgspec.Struct):
    control: Annotated[int, doc("Users in the control arm (rounded up).", 14751)]
    variant: Annotated[int, doc("Users in the variant arm: ratio × control, rounded up.", 14751)]
    total: Annotated[int, doc("The two arms together.", 29502)]
    control_exact: Annotated[float, doc("The unrounded solution (statsmodels' nobs1).", 14750.6)]
    effect_size: Annotated[float, doc("Cohen's h (conversion) or d (value), signed.", 0.0326)]


class TrafficOut(msgspec.Struct):
    users_so_far: Annotated[int, doc("Users assigned so far.", 12000)]
    days_running: Annotated[float | None, doc("Since it started (until it stopped); null in draft.", 6.0)]
    users_per_day: Annotated[float | None, doc("The pace so far; null until it has run an hour.", 2000.0)]
    users_needed: Annotated[int, doc("Users across every variant in its split.", 29502)]
    days_left: Annotated[float | None, doc("At that pace; 0 once reached; null with no pace yet.", 8.75)]


class PowerOut(msgspec.Struct):
    metric: Literal["conversion", "value"]
    mde: float
    relative: bool
    baseline_rate: float | None
    mean: float | None
    variance: float | None
    alpha: float
    power: float
    ratio: Annotated[float, doc("Variant users per control user used (with an experiment: its least-served variant's).", 1.0)]
    users_per_arm: SizeOut
    experiment_id: str | None
    traffic: Annotated[TrafficOut | None, doc("With experiment_id: its pace and the days left.")]

    @classmethod
    def of(cls, answer: PowerAnswer) -> PowerOut:
        q, s, t = answer.question, answer.size, answer.traffic
        return cls(
            metric=q.metric, mde=q.mde, relative=q.relative, baseline_rate=q.baseline_rate, mean=q.mean,
            variance=q.variance, alpha=q.alpha, power=q.power, ratio=q.ratio or 1.0,
            users_per_arm=SizeOut(s.control, s.variant, s.total, s.control_exact, s.effect_size),
            experiment_id=q.experiment_id,
            traffic=None if t is None else TrafficOut(t.users_so_far, t.days_running, t.users_per_day, t.users_needed, t.days_left),
        )


class PowerDTO(StrictDTO[PowerIn]):
    closed = True


class PowerController(Controller):
    path = "/power"
    tags = [openapi.RESULTS]
    opt = {"scope": READ}

    @post(
        dto=PowerDTO,
        return_dto=None,
        status_code=200,
        summary="Users needed to detect an effect, and days left for a running experiment.",
        responses=openapi.results_error_responses(*openapi.AUTHENTICATED, *openapi.WITH_BODY, 404),
    )
    async def power(self, data: JSONBody[PowerIn], estimate_power: NamedDependency[EstimatePower]) -> PowerOut:
        """Users per arm for a two-sided test at `alpha` to detect `mde` with `power`, equal to
        statsmodels' `NormalIndPower` with Cohen's h (conversion) or d (value). With
        `experiment_id`, a baseline left out is its control's so far, the ratio is its split
        (the least-served variant against the control), and `traffic` says how many users it
        has, at what pace, and the days left (docs/statistics.md)."""
        question = PowerQuestion(**{f: getattr(data, f) for f in data.__struct_fields__})
        return PowerOut.of(await estimate_power(question))
