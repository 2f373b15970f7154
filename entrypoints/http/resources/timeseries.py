"""Results over time: per day or hour, and per day since exposure, each variant's figures then
and cumulatively, and the comparisons of the cumulative figures."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from application.results import ComputeTimeSeries
from domain.keys import READ
from domain.series import ArmPoint, ComparisonPoint, SeriesPoint, TimeSeries, start_of
from entrypoints.http import openapi
from entrypoints.http.disconnects import while_connected
from entrypoints.http.resources.results import BoundsOut
from entrypoints.http.wire import Id, IntervalOut, Lift, PValue, doc


class ArmPointOut(msgspec.Struct):
    variant_id: Id
    users: Annotated[int, doc("Cumulative: assigned by the end of the period (since exposure: counted at this day).")]
    new_users: Annotated[int, doc("Assigned in this period; 0 in the series since exposure.")]
    conversions: Annotated[int, doc("Cumulative: users with a counted event of the type by the period's end.")]
    new_conversions: Annotated[int, doc("Users whose first counted event of the type is in this period.")]
    events: Annotated[int, doc("Cumulative counted events of the type.")]
    conversion_rate: Annotated[float | None, doc("conversions / users; null when users is 0.")]
    value_sum: Annotated[float, doc("Cumulative sum of `value` over the counted events of the type.")]
    value_per_user: Annotated[float | None, doc("value_sum / users; null when users is 0.")]

    @classmethod
    def of(cls, a: ArmPoint) -> ArmPointOut:
        return cls(
            a.variant_id, a.users, a.new_users, a.converters, a.new_converters, a.events, a.conversion_rate,
            a.value_sum, None if a.users == 0 else a.value_sum / a.users,
        )


class SequenceOut(msgspec.Struct):
    """The confidence sequence of the absolute lift: valid at every point of the series at once."""

    confidence_interval: BoundsOut
    p_value: Annotated[float | None, doc("Always valid; null when undefined.")]


class ValuePointOut(msgspec.Struct):
    absolute_lift: Lift
    relative_lift: Lift
    p_value: PValue
    confidence_interval: IntervalOut


class ComparisonPointOut(msgspec.Struct):
    variant_id: Id
    absolute_lift: Lift
    relative_lift: Lift
    p_value: Annotated[float | None, doc("The two-proportion z-test at this point (read once, not while watching).")]
    confidence_interval: Annotated[IntervalOut, doc("Newcombe, at this point.")]
    sequential: SequenceOut
    value: Annotated[ValuePointOut, doc("Welch's t-test of the cumulative value per user.")]
    chance_to_beat_control: Annotated[
        float | None,
        doc("P(variant's rate > control's) at this point: Beta posteriors of a flat prior, as method=bayesian "
            "reads the conversion; null when an arm has no users.", 0.91),
    ]

    @classmethod
    def of(cls, c: ComparisonPoint) -> ComparisonPointOut:
        z, s, t = c.conversion, c.sequential, c.value
        return cls(
            c.variant_id,
            z.absolute_lift,
            z.relative_lift,
            z.p_value,
            IntervalOut.of(z),
            SequenceOut(BoundsOut.of(s.level, s.interval), s.p_value),
            ValuePointOut(t.absolute_lift, t.relative_lift, t.p_value, IntervalOut.of(t)),
            c.chance_to_beat_control,
        )


class PointOut(msgspec.Struct, omit_defaults=True):
    variants: list[ArmPointOut]
    comparisons: list[ComparisonPointOut]
    start: Annotated[datetime | None, doc("The period's start, UTC (calendar series).")] = None
    day: Annotated[int | None, doc("Days since exposure: 0 is the day of assignment (UTC days).")] = None


class TimeSeriesOut(msgspec.Struct):
    experiment_id: Id
    event_type: Annotated[str, doc("The series' event type: the query's, else the primary one.")]
    period: Literal["day", "hour"]
    points: Annotated[list[PointOut], doc("One per period from the first assignment's to now's, oldest first.")]
    since_exposure: Annotated[
        list[PointOut], doc("One per day since exposure, from 0; each over the users exposed at least that long.")
    ]

    @classmethod
    def of(cls, s: TimeSeries) -> TimeSeriesOut:
        return cls(
            s.experiment.id,
            s.event_type,
            s.period.value,
            [_point(p, start=start_of(p.index, s.period)) for p in s.calendar],
            [_point(p, day=p.index) for p in s.since_exposure],
        )


def _point(p: SeriesPoint, start: datetime | None = None, day: int | None = None) -> PointOut:
    return PointOut(
        [ArmPointOut.of(a) for a in p.arms], [ComparisonPointOut.of(c) for c in p.comparisons], start, day
    )


class TimeSeriesController(Controller):
    path = "/experiments/{experiment_id:str}/results/timeseries"
    tags = [openapi.RESULTS]
    opt = {"scope": READ}

    @get(
        summary="Results over time: per day or hour, and per day since exposure.",
        responses=openapi.results_error_responses(*openapi.AUTHENTICATED, 404, 422),
    )
    async def timeseries(
        self,
        request: Request,
        experiment_id: FromPath[str],
        compute_time_series: NamedDependency[ComputeTimeSeries],
        period: FromQuery[Literal["day", "hour"]] = "day",
        event_type: FromQuery[str | None] = None,
    ) -> TimeSeriesOut:
        """Per UTC `period` (`day` or `hour`) from the first assignment's to the current one,
        each variant's users and conversions on `event_type` (default: the primary one) in that
        period and cumulatively, the cumulative rate and value per user, and each comparison of
        the cumulative figures with the control: the z-test and Newcombe interval read at that
        point, the confidence sequence (valid at every point at once) and Welch on the value
        per user. `since_exposure`: the same by whole UTC days since each user's day of
        assignment. Exact as results are: every point equals a count over the events up to it,
        late events included. Busy or slow reads are a 503 with `Retry-After`, as for results
        (docs/api.md, Results over time)."""
        series = await while_connected(request.receive, compute_time_series(experiment_id, period, event_type))
        return TimeSeriesOut.of(series)
