"""What a store answers for results: per-variant totals, summable, never raw events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from domain.stats import Proportion, SampleMean


@dataclass(frozen=True, slots=True)
class EventTotals:
    """The sufficient statistics of one event type (or of every type) in one variant: events,
    users with at least one, the sum and sum of squares of each such user's value total, and
    the sum of squares of each such user's count of events.

    Summable like gbstats' ``SampleMeanStatistic``: adding totals of disjoint sets of users adds
    them, and so does adding an increment computed against the totals it is added to (a user
    already counted adds 0 users, and (v + d)² − v² to the squares).
    """

    events: int = 0
    users: int = 0
    value_sum: float = 0.0
    value_sum_squares: float = 0.0
    events_sum_squares: int = 0

    def __add__(self, other: EventTotals) -> EventTotals:
        return EventTotals(
            self.events + other.events,
            self.users + other.users,
            self.value_sum + other.value_sum,
            self.value_sum_squares + other.value_sum_squares,
            self.events_sum_squares + other.events_sum_squares,
        )


@dataclass(frozen=True, slots=True)
class CrossTotals:
    """Over the users of one variant, the sums of per-user products of a ratio's numerator and
    denominator event types: Σ aᵢ·bᵢ of their counts, and Σ vᵢ·bᵢ of the numerator's value total
    and the denominator's count. Summable over disjoint sets of users; a user's totals going
    from (a, b) to (a + da, b + db) add (a + da)(b + db) − a·b."""

    events_products: float = 0
    value_products: float = 0

    def __add__(self, other: CrossTotals) -> CrossTotals:
        return CrossTotals(
            self.events_products + other.events_products, self.value_products + other.value_products
        )


@dataclass(frozen=True, slots=True)
class CovariateTotals:
    """CUPED's sums over one variant's users (domain/stats/cuped.py), for the primary event
    type: x a user's pre-period total (the events in the PRE_PERIOD before the assignment,
    ``domain.results.in_pre_period``), y the user's counted total, as in ``EventTotals``.

    ``users`` have a pre-period event (x's count > 0); ``value_sum`` and ``value_sum_squares``
    are Σx and Σx² of their pre-period values; ``both`` counts those that also have a counted
    event; ``value_products`` is Σ x·y of the values. Users without a pre-period event add 0 to
    every sum, so summable over disjoint sets of users."""

    users: int = 0
    value_sum: float = 0.0
    value_sum_squares: float = 0.0
    both: int = 0
    value_products: float = 0.0

    def __add__(self, other: CovariateTotals) -> CovariateTotals:
        return CovariateTotals(
            self.users + other.users,
            self.value_sum + other.value_sum,
            self.value_sum_squares + other.value_sum_squares,
            self.both + other.both,
            self.value_products + other.value_products,
        )


@dataclass(frozen=True, slots=True)
class VariantAggregate:
    """What the store answers for one variant: counts and sums only, never raw events.

    ``primary`` covers the counted primary events; users without one count as 0, so its
    ``value_sum``/``value_sum_squares`` over ``users`` give the mean and variance per user.
    """

    variant_id: str
    users: int = 0
    event_counts: Mapping[str, int] = field(default_factory=dict)
    unique_users_with_events: int = 0
    primary: EventTotals = EventTotals()
    # The totals of each event type the query's metrics name (ResultQuery.metric_types), and the
    # cross sums of each of its ratio pairs (ResultQuery.pairs): what scorecards read.
    by_type: Mapping[str, EventTotals] = field(default_factory=dict)
    cross: Mapping[tuple[str, str], CrossTotals] = field(default_factory=dict)
    # Of each event type a capped metric reads (ResultQuery.capped_types): every user of the
    # variant with a counted event of it, as (events, value sum); in no particular order.
    per_user: Mapping[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    # CUPED's sums for the primary event type, when the query asks for them (ResultQuery.covariates).
    covariate: CovariateTotals | None = None

    @property
    def events(self) -> int:
        return sum(self.event_counts.values())

    @property
    def conversion(self) -> Proportion:
        """Of the variant's users, those with a counted primary event."""
        return Proportion(self.users, self.primary.users)

    @property
    def value(self) -> SampleMean:
        """The primary events' value per user of the variant."""
        return SampleMean(self.users, self.primary.value_sum, self.primary.value_sum_squares)
