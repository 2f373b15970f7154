"""The concerns a result raises (domain/concerns.py): the thresholds of "too early to call",
and the order of gravity the list's health mark takes the first of."""

from __future__ import annotations

from domain.concerns import MIN_CONVERSIONS_TO_CALL, MIN_USERS_TO_CALL, Concern, concerns, too_early
from tests.unit.test_ui_views import computed


def test_too_early_is_below_either_threshold_in_any_variant() -> None:
    at = (MIN_USERS_TO_CALL, MIN_CONVERSIONS_TO_CALL)
    assert concerns(computed(at, at)) == []
    assert concerns(computed((MIN_USERS_TO_CALL - 1, 30), (120, 30))) == [Concern.EARLY]
    thin = computed((500, 30), (500, MIN_CONVERSIONS_TO_CALL - 1))
    assert [v.variant.name for v in too_early(thin)] == ["v1"]


def test_a_broken_split_comes_before_being_early() -> None:
    assert concerns(computed((2000, 200), (1000, 5))) == [Concern.SRM, Concern.EARLY]
    assert list(Concern) == [Concern.SRM, Concern.GUARDRAIL, Concern.SETUP, Concern.EARLY]
