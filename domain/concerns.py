"""What a reader must know before reading a result's lifts: the concerns a result raises, in
order of gravity. The pages say them in words (entrypoints/ui/views.py) and mark an
experiment's health by the gravest; the rules are here, with the results they judge."""

from __future__ import annotations

from enum import StrEnum

from domain.results import ExperimentResults, VariantResult
from domain.scorecard import Guard, MetricCard, MetricComparison

MIN_USERS_TO_CALL = 100
MIN_CONVERSIONS_TO_CALL = 10
"""Below these in any variant it is too early to call (docs/ui.md): the normal approximation
behind the intervals is poor, and a lift read off so few users swings widely."""


class Concern(StrEnum):
    """In order of gravity, the gravest first."""

    SRM = "srm"  # the users per variant do not match the split: nothing else can be trusted
    GUARDRAIL = "guardrail"  # a variant harms a guardrail beyond its tolerance
    SETUP = "setup"  # no primary event type: nothing is compared
    EARLY = "early"  # too few users or conversions in a variant to read a lift


def breached(results: ExperimentResults) -> list[tuple[MetricCard, MetricComparison]]:
    """The guardrail comparisons whose whole interval lies beyond the harm tolerated."""
    if results.scorecard is None:
        return []
    return [
        (card, comparison)
        for card in results.scorecard.metrics
        for comparison in card.comparisons
        if comparison.guardrail is Guard.BREACHED
    ]


def too_early(results: ExperimentResults) -> list[VariantResult]:
    """The variants below MIN_USERS_TO_CALL users or MIN_CONVERSIONS_TO_CALL conversions."""
    return [
        v for v in results.variants
        if v.users < MIN_USERS_TO_CALL or v.primary_unique_users < MIN_CONVERSIONS_TO_CALL
    ]


def concerns(results: ExperimentResults) -> list[Concern]:
    """Each concern the results raise, gravest first."""
    found = []
    if results.srm.mismatch or results.srm_sequential.mismatch:
        found.append(Concern.SRM)
    if breached(results):
        found.append(Concern.GUARDRAIL)
    if results.query.primary_event_type is None:
        found.append(Concern.SETUP)
    elif too_early(results):
        found.append(Concern.EARLY)
    return found
