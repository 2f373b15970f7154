"""Statistics: summable sufficient statistics, and the tests that compare two of them."""

from domain.stats._floats import finite
from domain.stats.frequentist import (
    ALPHA,
    Interval,
    IntervalMethod,
    TestResult,
    benjamini_hochberg_adjust,
    holm_adjust,
    lifts,
    two_proportion_test,
    welch_test,
    wilson_interval,
)
from domain.stats.ratio import RatioStatistic, ratio_test
from domain.stats.sample_ratio import SRM_ALPHA, SampleRatio, srm_check
from domain.stats.values import Proportion, SampleMean

__all__ = [
    "ALPHA",
    "SRM_ALPHA",
    "Interval",
    "IntervalMethod",
    "Proportion",
    "RatioStatistic",
    "SampleMean",
    "SampleRatio",
    "TestResult",
    "benjamini_hochberg_adjust",
    "finite",
    "holm_adjust",
    "lifts",
    "ratio_test",
    "srm_check",
    "two_proportion_test",
    "welch_test",
    "wilson_interval",
]
