"""An experiment's default analysis, and a request's settings over it."""

from __future__ import annotations

from typing import Any

import pytest

from domain.analysis import Analysis, Method
from domain.errors import ValidationFailed


def fields(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[str]:
    return [e.field for e in exc.value.errors]


def test_the_defaults_are_the_fixed_horizon_tests() -> None:
    assert Analysis.parse(None) == Analysis() == Analysis.parse({})
    assert Analysis().method is Method.FIXED
    assert Analysis().document() == {
        "method": "fixed", "sequential_tuning_users": 10_000, "prior": None, "correction": "holm",
        "metrics": [], "cuped": False, "dimensions": [],
    }


def test_a_document_parses_back_to_the_same_analysis() -> None:
    analysis = Analysis.parse({"method": "bayesian", "sequential_tuning_users": 5_000, "prior": {"mean": 0.0, "sd": 0.2}})
    assert analysis.method is Method.BAYESIAN and analysis.sequential_tuning_users == 5_000
    assert analysis.prior is not None and (analysis.prior.mean, analysis.prior.sd) == (0.0, 0.2)
    assert Analysis.parse(analysis.document()) == analysis


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("sequential", ["analysis"]),
        ({"method": "frequentist"}, ["analysis.method"]),
        ({"method": "sequential", "tuning": 5}, ["analysis.tuning"]),
        ({"sequential_tuning_users": 99}, ["analysis.sequential_tuning_users"]),
        ({"sequential_tuning_users": 10.5}, ["analysis.sequential_tuning_users"]),
        ({"sequential_tuning_users": True}, ["analysis.sequential_tuning_users"]),
        ({"prior": {"mean": 0.1}}, ["analysis.prior.sd"]),
        ({"prior": {"mean": 0.1, "sd": 0}}, ["analysis.prior.sd"]),
        ({"prior": {"mean": "0", "sd": 1}}, ["analysis.prior.mean"]),
        ({"prior": 0.3}, ["analysis.prior"]),
        ({"method": "x", "sequential_tuning_users": 0}, ["analysis.method", "analysis.sequential_tuning_users"]),
        ({"correction": "bonferroni"}, ["analysis.correction"]),
        ({"cuped": "yes"}, ["analysis.cuped"]),
        ({"cuped": 1}, ["analysis.cuped"]),
    ],
)
def test_every_invalid_setting_is_named(value: Any, named: list[str]) -> None:
    with pytest.raises(ValidationFailed) as exc:
        Analysis.parse(value)
    assert sorted(fields(exc)) == sorted(named)


def test_a_request_overrides_what_it_names_and_keeps_the_rest() -> None:
    default = Analysis.parse({"method": "sequential", "sequential_tuning_users": 2_000})
    assert default.with_settings() == default
    bayesian = default.with_settings(method="bayesian", prior_sd=0.5)
    assert bayesian.method is Method.BAYESIAN and bayesian.sequential_tuning_users == 2_000
    assert bayesian.prior is not None and (bayesian.prior.mean, bayesian.prior.sd) == (0.0, 0.5)


def test_a_request_names_its_parameters_as_the_query_does() -> None:
    with pytest.raises(ValidationFailed) as exc:
        Analysis().with_settings(method="nope", tuning_users=5, prior_mean=0.1)
    assert sorted(fields(exc)) == ["method", "prior_sd", "sequential_tuning_users"]
    with pytest.raises(ValidationFailed) as exc:
        Analysis().with_settings(prior_mean=float("nan"), prior_sd=1.0)
    assert fields(exc) == ["prior_mean"]
