"""The always-valid confidence sequence against GrowthBook's reference, scipy and simulation.

The reference figures are GrowthBook gbstats' ``tests/frequentist/test_tests.py::
TestSequentialTTest`` (``packages/stats`` of the growthbook/growthbook repository, MIT licence).
Simulations are seeded, so every run sees the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from analytics.inference.results import ErrorCode
from analytics.inference.sequential import (
    confidence_sequence,
    sequential_halfwidth,
    sequential_rho,
)
from analytics.inference.sufficient import SampleStats
from analytics.inference.ttests import welch_test

ALPHA = 0.05
STREAMS = 400
PEEKS = 20


def test_relative_sequence_matches_gbstats_reference() -> None:
    # gbstats TestSequentialTTest: control n 3000, tuning parameter 1000, relative.
    control = SampleStats(n=3000, sum=1396.87, sum_squares=52377.9767)
    treatment = SampleStats(n=3461, sum=2422.7, sum_squares=134698.29)
    result = confidence_sequence(control, treatment, tuning=1000, relative=True)
    assert result.ok
    assert result.effect == pytest.approx(0.50336, abs=5e-5)
    assert result.ci_low == pytest.approx(-0.55844, abs=5e-5)
    assert result.ci_high == pytest.approx(1.56516, abs=5e-5)
    assert result.relative and result.tuning == 1000 and result.n == 6461


def test_absolute_sequence_is_centred_on_the_welch_estimate() -> None:
    control = SampleStats(n=3000, sum=1396.87, sum_squares=52377.9767)
    treatment = SampleStats(n=3461, sum=2422.7, sum_squares=134698.29)
    result = confidence_sequence(control, treatment, tuning=1000)
    welch = welch_test(control, treatment, distribution="normal")
    assert result.effect == pytest.approx(welch.effect, rel=1e-12)
    assert result.se == pytest.approx(welch.se, rel=1e-12)
    assert result.halfwidth == pytest.approx(
        sequential_halfwidth(result.se**2, 6461, ALPHA, 1000), rel=1e-12
    )


def test_rho_follows_its_closed_form() -> None:
    # -2 ln(0.05) = 5.991; ln(1 + 5.991) = 1.945; sqrt(7.936 / 1000) = 0.08908.
    assert sequential_rho(0.05, 1000) == pytest.approx(0.089085, abs=1e-6)
    with pytest.raises(ValueError, match="tuning"):
        sequential_rho(0.05, 0)
    with pytest.raises(ValueError, match="alpha"):
        sequential_rho(1.0, 1000)


@pytest.mark.parametrize(
    ("alpha", "tuning"),
    [
        (0.05, 1000),
        pytest.param(0.05, 5000, marks=pytest.mark.slow),  # 4 s each: make test runs them
        pytest.param(0.0125, 1000, marks=pytest.mark.slow),
    ],
)
def test_sequence_contains_the_welch_interval_at_every_n(alpha: float, tuning: float) -> None:
    # One stream, looked at after every unit from 10 per arm on, unequal variances so that
    # Welch's degrees of freedom sit well below n: the price of peeking is width, always.
    rng = np.random.default_rng(21)
    control = rng.normal(0.0, 1.0, 3000)
    treatment = rng.normal(0.1, 3.0, 3000)
    for n in range(10, 3001):
        welch = sps.ttest_ind(treatment[:n], control[:n], equal_var=False)
        low, high = welch.confidence_interval(1 - alpha)
        sequence = confidence_sequence(
            SampleStats.from_values(control[:n]),
            SampleStats.from_values(treatment[:n]),
            alpha,
            tuning=tuning,
        )
        assert sequence.ci_low is not None and sequence.ci_high is not None
        assert sequence.ci_low <= low and high <= sequence.ci_high, n


def test_p_value_is_below_alpha_exactly_when_the_sequence_excludes_zero() -> None:
    rng = np.random.default_rng(22)
    for shift in np.linspace(0.0, 0.4, 41):
        result = confidence_sequence(
            SampleStats.from_values(rng.normal(0, 1, 300)),
            SampleStats.from_values(rng.normal(shift, 1, 300)),
            tuning=1000,
        )
        assert result.p_value is not None and result.ci_low is not None
        assert result.ci_high is not None
        assert result.significant == (result.ci_low > 0 or result.ci_high < 0)


def peeked_streams(shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per stream and peek, whether the confidence sequence (and the fixed-horizon Welch
    interval) excluded zero; 20 peeks at 50, 100, ..., 1000 users per arm.

    Outcomes are per-user complaint rates: skewed, mostly zero, as the guardrails see them.
    """
    rng = np.random.default_rng(seed)
    step = 50
    sequential = np.zeros((STREAMS, PEEKS), dtype=bool)
    fixed = np.zeros((STREAMS, PEEKS), dtype=bool)
    for stream in range(STREAMS):
        interactions = rng.poisson(4.0, (2, PEEKS * step)) + 1
        rates = rng.binomial(interactions, 0.05) / interactions
        rates[1] += shift
        for peek in range(PEEKS):
            n = (peek + 1) * step
            control = SampleStats.from_values(rates[0, :n])
            treatment = SampleStats.from_values(rates[1, :n])
            sequential[stream, peek] = confidence_sequence(
                control, treatment, ALPHA, tuning=1000
            ).significant
            fixed[stream, peek] = welch_test(control, treatment, ALPHA).significant
    return sequential, fixed


def test_null_streams_ever_exclude_zero_at_most_alpha_of_the_time() -> None:
    sequential, fixed = peeked_streams(0.0, seed=23)
    ever = int(sequential.any(axis=1).sum())
    # Up to Monte Carlo error: the upper end of the 95% binomial interval around alpha.
    upper = sps.binom.ppf(0.975, STREAMS, ALPHA)
    assert ever <= upper, f"{ever} of {STREAMS} null streams excluded zero at some peek"
    # The simulation can see the peeking problem: the fixed-horizon test, peeked at 20
    # times, rejects well above alpha.
    assert fixed.any(axis=1).sum() > 2 * upper


def test_planted_effect_is_found_most_of_the_time() -> None:
    # A rise of 0.02 in the complaint rate, a fifth of its standard deviation across users:
    # found in 90% of the streams (85% at the last peek, 1000 users per arm).
    sequential, _ = peeked_streams(0.02, seed=24)
    assert sequential.any(axis=1).mean() > 0.8
    assert sequential[:, -1].mean() > 0.75


@pytest.mark.parametrize(
    ("control", "treatment", "relative", "error"),
    [
        (SampleStats(1, 2.0, 4.0), SampleStats(50, 10.0, 30.0), False, ErrorCode.TOO_FEW_UNITS),
        (SampleStats(0, 0.0, 0.0), SampleStats(50, 10.0, 30.0), False, ErrorCode.TOO_FEW_UNITS),
        (SampleStats(40, 40.0, 40.0), SampleStats(50, 50.0, 50.0), False, ErrorCode.ZERO_VARIANCE),
        (SampleStats(40, 0.0, 0.0), SampleStats(50, 0.0, 0.0), False, ErrorCode.ZERO_VARIANCE),
        (
            SampleStats(40, math.nan, 1.0),
            SampleStats(50, 10.0, 30.0),
            False,
            ErrorCode.NON_FINITE_INPUT,
        ),
        (
            SampleStats(40, 0.0, 3.0),
            SampleStats(50, 10.0, 30.0),
            True,
            ErrorCode.ZERO_CONTROL_MEAN,
        ),
    ],
)
def test_degenerate_input_gives_a_neutral_result(
    control: SampleStats, treatment: SampleStats, relative: bool, error: ErrorCode
) -> None:
    result = confidence_sequence(control, treatment, relative=relative)
    assert result.error == error and not result.ok and not result.significant
    assert result.effect is None and result.ci_low is None and result.ci_high is None
    assert result.p_value is None and result.halfwidth is None


def test_zero_variance_in_one_arm_still_bounds_the_difference() -> None:
    # As Welch: one constant arm is fine, the other carries the uncertainty.
    result = confidence_sequence(SampleStats(40, 0.0, 0.0), SampleStats(50, 10.0, 30.0))
    assert result.ok and result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < 0.2 < result.ci_high


def test_arguments_are_checked() -> None:
    stats = SampleStats(10, 5.0, 10.0)
    with pytest.raises(ValueError, match="alpha"):
        confidence_sequence(stats, stats, alpha=0.0)
    with pytest.raises(ValueError, match="tuning"):
        confidence_sequence(stats, stats, tuning=-1)
