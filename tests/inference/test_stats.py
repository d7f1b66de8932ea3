"""Tests of analytics.inference against independent implementations and reference values.

Reference figures come from GrowthBook's own tests in the growthbook/growthbook repository
(MIT licence): gbstats' (``packages/stats/tests``) and the TypeScript tests under ``packages/``;
each test cites the file it comes from. Independent
implementations: scipy (Welch, chisquare, ks_2samp, mannwhitneyu) and statsmodels
(multipletests, OLS). Simulations are seeded, so every run sees the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from analytics.inference.stats import (
    ErrorCode,
    PairStats,
    SampleStats,
    benjamini_hochberg,
    cuped_adjust,
    cuped_welch_test,
    detect_change_points,
    distribution_test,
    fit_half_life,
    holm_bonferroni,
    psi,
    ratio_metric_stats,
    ratio_welch_test,
    relative_effect,
    srm_test,
    two_stage_benjamini_hochberg,
    welch_test,
)

REPLICATES = 400
ALPHA = 0.05


def binomial_interval(trials: int, rate: float, level: float = 0.95) -> tuple[int, int]:
    """Central interval of a Binomial(trials, rate) count."""
    tail = (1 - level) / 2
    return int(sps.binom.ppf(tail, trials, rate)), int(sps.binom.ppf(1 - tail, trials, rate))


def assert_rate(count: int, trials: int, rate: float) -> None:
    low, high = binomial_interval(trials, rate)
    assert low <= count <= high, f"{count}/{trials} outside [{low}, {high}] for rate {rate}"


# --- Sufficient statistics -------------------------------------------------------------


def test_sample_stats_match_numpy() -> None:
    values = np.random.default_rng(1).lognormal(0, 1, 500)
    stats = SampleStats.from_values(values)
    assert stats.n == 500
    assert stats.mean == pytest.approx(values.mean(), rel=1e-12)
    assert stats.variance == pytest.approx(values.var(ddof=1), rel=1e-10)


def test_pair_stats_match_numpy_cov() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(3, 2, 300)
    y = 0.5 * x + rng.normal(0, 1, 300)
    pairs = PairStats.from_values(x, y)
    cov = np.cov(x, y, ddof=1)
    assert pairs.var_x == pytest.approx(cov[0, 0], rel=1e-10)
    assert pairs.var_y == pytest.approx(cov[1, 1], rel=1e-10)
    assert pairs.covariance == pytest.approx(cov[0, 1], rel=1e-10)
    assert pairs.correlation == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-10)
    assert pairs.x == SampleStats.from_values(x)


def test_pair_stats_refuse_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        PairStats.from_values([1.0, 2.0], [1.0])


def test_from_moments_round_trips() -> None:
    stats = SampleStats.from_moments(n=40, mean=2.5, variance=1.7)
    assert (stats.n, stats.mean) == (40, pytest.approx(2.5))
    assert stats.variance == pytest.approx(1.7)


# --- Welch and relative effect ---------------------------------------------------------

# GrowthBook gbstats tests/frequentist/test_tests.py::TestTwoSidedTTest
GB_CONTROL = SampleStats(n=3407, sum=1396.87, sum_squares=52377.9767)
GB_TREATMENT = SampleStats(n=3461, sum=2422.7, sum_squares=134698.29)
FIVE_DECIMALS = 5e-6


def test_welch_reproduces_gbstats_absolute_reference() -> None:
    # GrowthBook gbstats tests/frequentist/test_tests.py::TestTwoSidedTTest (absolute).
    result = welch_test(GB_CONTROL, GB_TREATMENT)
    assert result.error is None
    assert result.effect == pytest.approx(0.29, abs=FIVE_DECIMALS)
    assert result.ci_low == pytest.approx(0.04538, abs=FIVE_DECIMALS)
    assert result.ci_high == pytest.approx(0.53462, abs=FIVE_DECIMALS)
    assert result.p_value == pytest.approx(0.02016, abs=FIVE_DECIMALS)


def test_relative_effect_reproduces_gbstats_relative_reference() -> None:
    # GrowthBook gbstats tests/frequentist/test_tests.py::TestTwoSidedTTest (relative).
    result = relative_effect(GB_CONTROL, GB_TREATMENT)
    assert result.error is None and result.relative
    assert result.effect == pytest.approx(0.70732, abs=FIVE_DECIMALS)
    assert result.ci_low == pytest.approx(-0.03526, abs=FIVE_DECIMALS)
    assert result.ci_high == pytest.approx(1.44989, abs=FIVE_DECIMALS)
    assert result.p_value == pytest.approx(0.06191, abs=FIVE_DECIMALS)


def test_gbstats_reference_needs_the_t_distribution() -> None:
    # GrowthBook gbstats tests/frequentist/test_tests.py::TestTwoSidedTTest: the normal
    # approximation misses the reference in the fourth or fifth decimal, the t does not.
    normal = welch_test(GB_CONTROL, GB_TREATMENT, distribution="normal")
    assert normal.df is None
    assert normal.ci_low is not None and normal.p_value is not None
    assert abs(normal.ci_low - 0.04538) > 2e-5
    assert abs(normal.p_value - 0.02016) > 2e-5
    relative_normal = relative_effect(GB_CONTROL, GB_TREATMENT, distribution="normal")
    assert relative_normal.p_value is not None
    assert abs(relative_normal.p_value - 0.06191) > 2e-5


@pytest.mark.parametrize(
    ("seed", "n_control", "n_treatment", "scale_treatment"),
    [(0, 30, 45, 1.0), (1, 12, 200, 3.0), (2, 500, 480, 0.5), (3, 2, 3, 2.0)],
)
def test_welch_matches_scipy_on_raw_arrays(
    seed: int, n_control: int, n_treatment: int, scale_treatment: float
) -> None:
    rng = np.random.default_rng(seed)
    control = rng.normal(10, 2, n_control)
    treatment = rng.normal(10.4, 2 * scale_treatment, n_treatment)
    result = welch_test(SampleStats.from_values(control), SampleStats.from_values(treatment))
    reference = sps.ttest_ind(treatment, control, equal_var=False)
    ci = reference.confidence_interval(confidence_level=0.95)
    assert result.effect == pytest.approx(treatment.mean() - control.mean(), rel=1e-9)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-7)
    assert result.df == pytest.approx(reference.df, rel=1e-9)
    assert (result.ci_low, result.ci_high) == (
        pytest.approx(ci.low, rel=1e-8),
        pytest.approx(ci.high, rel=1e-8),
    )


def test_welch_alpha_sets_ci_width() -> None:
    narrow = welch_test(GB_CONTROL, GB_TREATMENT, alpha=0.2)
    wide = welch_test(GB_CONTROL, GB_TREATMENT, alpha=0.01)
    assert narrow.ci_low is not None and wide.ci_low is not None
    assert wide.ci_low < narrow.ci_low
    assert narrow.p_value == wide.p_value


def test_welch_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="alpha"):
        welch_test(GB_CONTROL, GB_TREATMENT, alpha=1.5)
    with pytest.raises(ValueError, match="distribution"):
        welch_test(GB_CONTROL, GB_TREATMENT, distribution="z")  # type: ignore[arg-type]


def test_welch_finds_planted_effect() -> None:
    rng = np.random.default_rng(11)
    control = SampleStats.from_values(rng.lognormal(0, 1, 2000))
    treatment = SampleStats.from_values(rng.lognormal(0, 1, 2000) * 1.15)
    result = welch_test(control, treatment)
    assert result.p_value is not None and result.p_value < 0.01
    assert result.effect is not None and result.effect > 0


def test_welch_null_false_positive_rate_and_coverage() -> None:
    # Unequal sizes and variances: where Welch (not Student) keeps its level.
    rng = np.random.default_rng(12)
    rejections = covered = 0
    for _ in range(REPLICATES):
        control = SampleStats.from_values(rng.normal(5, 1, 40))
        treatment = SampleStats.from_values(rng.normal(5, 3, 160))
        result = welch_test(control, treatment, alpha=ALPHA)
        assert result.ci_low is not None and result.ci_high is not None
        rejections += result.significant
        covered += result.ci_low <= 0 <= result.ci_high
    assert_rate(rejections, REPLICATES, ALPHA)
    assert_rate(covered, REPLICATES, 1 - ALPHA)


def test_relative_effect_ci_coverage() -> None:
    rng = np.random.default_rng(13)
    covered = 0
    true_lift = 0.1
    for _ in range(REPLICATES):
        control = SampleStats.from_values(rng.exponential(2.0, 800))
        treatment = SampleStats.from_values(rng.exponential(2.0 * (1 + true_lift), 800))
        result = relative_effect(control, treatment)
        assert result.ci_low is not None and result.ci_high is not None
        covered += result.ci_low <= true_lift <= result.ci_high
    assert_rate(covered, REPLICATES, 1 - ALPHA)


# --- Ratio metrics (delta method) ------------------------------------------------------


def simulate_ratio_users(
    rng: np.random.Generator, n_users: int, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (refusals, interactions): heavy users interact more, rates vary by user."""
    interactions = rng.poisson(rng.gamma(2.0, 5.0, n_users)) + 1
    user_rate = rng.beta(2.0, 2.0 * (1 - rate) / rate, n_users)
    refusals = rng.binomial(interactions, user_rate)
    return refusals.astype(float), interactions.astype(float)


def test_ratio_metric_pools_sums_not_user_ratios() -> None:
    numerator, denominator = np.array([1.0, 0.0, 6.0]), np.array([2.0, 1.0, 10.0])
    estimate = ratio_metric_stats(PairStats.from_values(numerator, denominator))
    assert estimate.ratio == pytest.approx(7 / 13)


def test_ratio_delta_variance_matches_linearisation() -> None:
    # Deng et al. (2018): the delta-method variance equals the variance of the mean of the
    # linearised values (X - R Y) / mean(Y).
    rng = np.random.default_rng(20)
    numerator, denominator = simulate_ratio_users(rng, 700, 0.1)
    estimate = ratio_metric_stats(PairStats.from_values(numerator, denominator))
    assert estimate.ratio is not None
    linearised = (numerator - estimate.ratio * denominator) / denominator.mean()
    assert estimate.variance == pytest.approx(linearised.var(ddof=1) / 700, rel=1e-9)


def test_ratio_se_matches_bootstrap() -> None:
    rng = np.random.default_rng(21)
    numerator, denominator = simulate_ratio_users(rng, 1500, 0.08)
    estimate = ratio_metric_stats(PairStats.from_values(numerator, denominator))
    resamples = rng.integers(0, 1500, size=(2000, 1500))
    boot = numerator[resamples].sum(axis=1) / denominator[resamples].sum(axis=1)
    assert estimate.se == pytest.approx(boot.std(ddof=1), rel=0.1)


def test_ratio_welch_null_rate_coverage_and_power() -> None:
    rng = np.random.default_rng(22)
    rejections = covered = 0
    for _ in range(REPLICATES):
        control = PairStats.from_values(*simulate_ratio_users(rng, 400, 0.1))
        treatment = PairStats.from_values(*simulate_ratio_users(rng, 400, 0.1))
        result = ratio_welch_test(control, treatment, alpha=ALPHA)
        assert result.ci_low is not None and result.ci_high is not None
        rejections += result.significant
        covered += result.ci_low <= 0 <= result.ci_high
    assert_rate(rejections, REPLICATES, ALPHA)
    assert_rate(covered, REPLICATES, 1 - ALPHA)

    control = PairStats.from_values(*simulate_ratio_users(rng, 3000, 0.10))
    treatment = PairStats.from_values(*simulate_ratio_users(rng, 3000, 0.12))
    planted = ratio_welch_test(control, treatment)
    assert planted.p_value is not None and planted.p_value < 0.01
    relative = ratio_welch_test(control, treatment, relative=True)
    assert relative.effect is not None and 0.05 < relative.effect < 0.35


# --- CUPED -----------------------------------------------------------------------------


def simulate_pre_post(
    rng: np.random.Generator, n_users: int, effect: float, rho: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    pre = rng.normal(10, 2, n_users)
    noise = rng.normal(0, 2 * math.sqrt(1 - rho**2) / rho, n_users)
    post = 1 + pre + noise + effect
    return pre, post


def test_cuped_agrees_with_ols_on_treated_coefficient() -> None:
    rng = np.random.default_rng(30)
    pre_c, post_c = simulate_pre_post(rng, 2000, 0.0)
    pre_t, post_t = simulate_pre_post(rng, 2000, 0.3)
    result = cuped_welch_test(
        PairStats.from_values(pre_c, post_c), PairStats.from_values(pre_t, post_t)
    )

    pre = np.concatenate([pre_c, pre_t])
    post = np.concatenate([post_c, post_t])
    treated = np.concatenate([np.zeros(2000), np.ones(2000)])
    design = np.column_stack([np.ones_like(pre), treated, pre - pre.mean()])
    ols = sm.OLS(post, design).fit()
    assert result.effect == pytest.approx(ols.params[1], rel=1e-9)
    assert result.se == pytest.approx(ols.bse[1], rel=0.02)
    assert result.p_value is not None and result.p_value < 0.01


def test_cuped_reduces_variance_by_rho_squared() -> None:
    rng = np.random.default_rng(31)
    pre_c, post_c = simulate_pre_post(rng, 5000, 0.0, rho=0.8)
    pre_t, post_t = simulate_pre_post(rng, 5000, 0.0, rho=0.8)
    control, treatment = PairStats.from_values(pre_c, post_c), PairStats.from_values(pre_t, post_t)
    adjustment = cuped_adjust(control, treatment)
    assert adjustment.theta == pytest.approx(1.0, abs=0.05)
    assert adjustment.variance_reduction == pytest.approx(0.64, abs=0.02)
    plain = welch_test(control.y, treatment.y)
    adjusted = cuped_welch_test(control, treatment)
    assert adjusted.se is not None and plain.se is not None
    assert adjusted.se < 0.7 * plain.se


def test_cuped_without_pre_period_spread_is_plain_welch() -> None:
    rng = np.random.default_rng(32)
    control = PairStats.from_values(np.full(50, 3.0), rng.normal(0, 1, 50))
    treatment = PairStats.from_values(np.full(60, 3.0), rng.normal(0.2, 1, 60))
    adjustment = cuped_adjust(control, treatment)
    assert adjustment.theta == 0.0 and adjustment.variance_reduction == pytest.approx(0.0)
    cuped, plain = cuped_welch_test(control, treatment), welch_test(control.y, treatment.y)
    assert cuped.effect == pytest.approx(plain.effect)
    assert cuped.p_value == pytest.approx(plain.p_value)


def test_cuped_null_rate_coverage_and_power() -> None:
    rng = np.random.default_rng(33)
    rejections = covered = 0
    for _ in range(REPLICATES):
        control = PairStats.from_values(*simulate_pre_post(rng, 300, 0.0))
        treatment = PairStats.from_values(*simulate_pre_post(rng, 300, 0.0))
        result = cuped_welch_test(control, treatment, alpha=ALPHA)
        assert result.ci_low is not None and result.ci_high is not None
        rejections += result.significant
        covered += result.ci_low <= 0 <= result.ci_high
    assert_rate(rejections, REPLICATES, ALPHA)
    assert_rate(covered, REPLICATES, 1 - ALPHA)

    control = PairStats.from_values(*simulate_pre_post(rng, 2000, 0.0))
    treatment = PairStats.from_values(*simulate_pre_post(rng, 2000, 0.4))
    result = cuped_welch_test(control, treatment)
    assert result.p_value is not None and result.p_value < 0.01


# --- Multiple testing ------------------------------------------------------------------

# GrowthBook packages/shared/test/experiments.test.ts
GB_BH_P = [0.898, 0.138, 0.007, 0.964, 0.538, 0.006, 0.138]
GB_BH_Q = [0.964, 0.2415, 0.0245, 0.964, 0.7532, 0.0245, 0.2415]
GB_HOLM_P = [0.01, 0.04, 0.03, 0.005, 0.55, 0.6]
GB_HOLM_ADJUSTED = [0.05, 0.12, 0.12, 0.03, 1, 1]


def test_benjamini_hochberg_reproduces_growthbook() -> None:
    # GrowthBook packages/shared/test/experiments.test.ts (Benjamini-Hochberg).
    np.testing.assert_allclose(benjamini_hochberg(GB_BH_P), GB_BH_Q, atol=1e-4)


def test_holm_bonferroni_reproduces_growthbook() -> None:
    # GrowthBook packages/shared/test/experiments.test.ts (Holm-Bonferroni).
    np.testing.assert_allclose(holm_bonferroni(GB_HOLM_P), GB_HOLM_ADJUSTED, atol=1e-12)


@pytest.mark.parametrize(
    ("function", "method"), [(benjamini_hochberg, "fdr_bh"), (holm_bonferroni, "holm")]
)
@pytest.mark.parametrize("seed", range(5))
def test_adjustments_match_statsmodels(
    function: Callable[[np.ndarray], np.ndarray], method: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(size=15), rng.uniform(0, 0.01, size=5)])
    expected = multipletests(p, method=method)[1]
    np.testing.assert_allclose(function(p), expected, rtol=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("false_nulls", [0, 6, 20])
def test_two_stage_bh_matches_statsmodels(seed: int, false_nulls: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(size=20 - false_nulls), rng.uniform(0, 1e-3, false_nulls)])
    expected = multipletests(p, alpha=0.05, method="fdr_tsbky")
    adjusted = two_stage_benjamini_hochberg(p, 0.05)
    np.testing.assert_allclose(adjusted, expected[1], rtol=1e-12)
    np.testing.assert_array_equal(adjusted <= 0.05, expected[0])
    with_nan = two_stage_benjamini_hochberg(np.insert(p, 3, math.nan), 0.05)
    assert math.isnan(with_nan[3])
    np.testing.assert_allclose(np.delete(with_nan, 3), expected[1], rtol=1e-12)


def test_two_stage_bh_keeps_the_fdr_and_finds_more_than_bh() -> None:
    """200 seeded families of 400 tests, 60% of them false nulls (z shifted by 2.5): the
    realised FDR averages <= 5% (within the simulation's error) and the procedure finds more
    than Benjamini-Hochberg; under the complete null it rejects as often as BH does."""
    rng = np.random.default_rng(11)
    fdp, found, found_bh, any_null = [], [], [], []
    for _ in range(200):
        false = np.arange(400) < 240
        z = rng.normal(size=400) + 2.5 * false
        p = sps.norm.sf(z)
        rejected = two_stage_benjamini_hochberg(p, 0.05) <= 0.05
        fdp.append((rejected & ~false).sum() / max(rejected.sum(), 1))
        found.append((rejected & false).sum())
        found_bh.append(((benjamini_hochberg(p) <= 0.05) & false).sum())
        null_p = rng.uniform(size=400)
        any_null.append((two_stage_benjamini_hochberg(null_p, 0.05) <= 0.05).any())
    assert np.mean(fdp) <= 0.05 + 2 * np.std(fdp) / np.sqrt(200)
    assert np.mean(found) > 1.1 * np.mean(found_bh)
    assert np.mean(any_null) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 200)


def test_two_stage_bh_refuses_an_alpha_outside_0_1() -> None:
    with pytest.raises(ValueError, match="alpha"):
        two_stage_benjamini_hochberg([0.01, 0.2], 1.0)
    assert two_stage_benjamini_hochberg([], 0.05).shape == (0,)


def test_adjustments_pass_nan_through() -> None:
    p = [0.01, math.nan, 0.04, 0.03]
    q = benjamini_hochberg(p)
    assert math.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2, 3]], multipletests([0.01, 0.04, 0.03], method="fdr_bh")[1])
    holm = holm_bonferroni(p)
    assert math.isnan(holm[1])
    np.testing.assert_allclose(holm[[0, 2, 3]], [0.03, 0.06, 0.06])
    assert benjamini_hochberg([]).shape == (0,)
    assert np.all(np.isnan(holm_bonferroni([math.nan, math.nan])))


def test_adjustments_refuse_out_of_range_p_values() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.5, 1.2])


# --- Sample-ratio mismatch -------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "weights", "expected_p"),
    [
        # GrowthBook packages/back-end/test/stats.test.ts (checkSrm), every row.
        ([1000, 1200], [0.5, 0.5], 0.000020079),
        ([135, 115], [0.5, 0.5], 0.205903211),
        ([310, 98], [0.75, 0.25], 0.647434186),
        ([500, 500, 600], [0.34, 0.33, 0.33], 0.000592638),
    ],
)
def test_srm_reproduces_growthbook(
    counts: list[int], weights: list[float], expected_p: float
) -> None:
    result = srm_test(counts, weights)
    assert result.p_value == pytest.approx(expected_p, abs=5e-10)
    expected = np.array(weights) / sum(weights) * sum(counts)
    reference = sps.chisquare(counts, expected)
    assert result.chi2 == pytest.approx(reference.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.ok == (expected_p >= 0.001)


def test_srm_skips_when_fewer_than_two_weighted_variations() -> None:
    # GrowthBook packages/back-end/test/stats.test.ts: p = 1 without two weighted variations.
    result = srm_test([1000, 1200], [1.0, 0.0])
    assert (result.p_value, result.ok, result.error) == (1.0, True, ErrorCode.TOO_FEW_VARIATIONS)
    assert srm_test([0, 0], [0.5, 0.5]).p_value == 1.0


def test_srm_leaves_out_zero_weight_variations() -> None:
    assert srm_test([1000, 1200, 77], [0.5, 0.5, 0.0]) == srm_test([1000, 1200], [0.5, 0.5])


def test_srm_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="weights"):
        srm_test([1, 2, 3], [0.5, 0.5])


# --- Whole distributions ---------------------------------------------------------------


@pytest.mark.parametrize(("seed", "n_control", "n_treatment"), [(0, 30, 40), (1, 500, 700)])
def test_distribution_test_matches_scipy(seed: int, n_control: int, n_treatment: int) -> None:
    rng = np.random.default_rng(seed)
    control = rng.lognormal(0, 1, n_control)
    treatment = rng.lognormal(0.2, 1.2, n_treatment)
    result = distribution_test(control, treatment)
    method = "exact" if n_control * n_treatment <= 10_000 else "asymp"
    ks = sps.ks_2samp(treatment, control, method=method)
    mw = sps.mannwhitneyu(treatment, control, alternative="two-sided")
    assert result.ks_statistic == pytest.approx(ks.statistic)
    assert result.ks_p_value == pytest.approx(ks.pvalue, rel=1e-9)
    assert result.mw_statistic == pytest.approx(mw.statistic)
    assert result.mw_p_value == pytest.approx(mw.pvalue, rel=1e-9)
    superiority = np.mean(treatment[:, None] > control[None, :])
    assert result.probability_of_superiority == pytest.approx(superiority)


def test_distribution_test_drops_non_finite_values() -> None:
    result = distribution_test([1.0, 2.0, math.nan, 3.0], [2.0, 4.0, math.inf, 5.0])
    assert (result.n_control, result.n_treatment) == (3, 3)
    assert result.ok


def test_psi_by_hand() -> None:
    # Quartile bins of 1..8 close at 2, 4, 6: expected shares 1/4 each. Actual [1, 1, 1, 8]
    # puts 3/4 in the first bin, none in the second and third (floored at 1e-4), 1/4 last.
    expected = np.arange(1.0, 9.0)
    actual = np.array([1.0, 1.0, 1.0, 8.0])
    e = np.array([0.25, 0.25, 0.25, 0.25])
    a = np.array([0.75, 1e-4, 1e-4, 0.25])
    assert psi(expected, actual, bins=4) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))


def test_psi_grows_with_the_shift() -> None:
    rng = np.random.default_rng(40)
    base = rng.normal(0, 1, 5000)
    small = psi(base, rng.normal(0.1, 1, 5000))
    large = psi(base, rng.normal(0.8, 1, 5000))
    assert 0 < small < 0.1 < 0.25 < large


# --- Change points ---------------------------------------------------------------------


def test_change_points_quiet_on_null_series() -> None:
    rng = np.random.default_rng(50)
    alarms = sum(bool(detect_change_points(rng.normal(0, 1, 60))) for _ in range(REPLICATES))
    assert alarms <= binomial_interval(REPLICATES, 0.05)[0]  # well under 5%


def test_change_points_locate_planted_step() -> None:
    rng = np.random.default_rng(51)
    hits = 0
    for replicate in range(100):
        start = 15 + replicate % 30
        series = rng.normal(0, 1, 60)
        series[start:] += 3.0
        found = detect_change_points(series)
        hits += len(found) == 1 and abs(found[0] - start) <= 1
    assert hits >= 90


def test_change_points_two_steps_and_missing_days() -> None:
    rng = np.random.default_rng(52)
    series = rng.normal(0, 0.5, 90)
    series[30:] += 3.0
    series[65:] -= 2.0
    series[[5, 40, 41]] = math.nan
    found = detect_change_points(series)
    assert len(found) == 2
    assert abs(found[0] - 30) <= 1 and abs(found[1] - 65) <= 1


def test_change_points_noise_free_step() -> None:
    assert detect_change_points(np.r_[np.zeros(10), np.ones(10)]) == [10]


# --- Half-life -------------------------------------------------------------------------


def saturating(days: np.ndarray, amplitude: float, half_life: float) -> np.ndarray:
    return np.asarray(amplitude * (1 - np.exp(-days * math.log(2) / half_life)))


def test_half_life_recovered_exactly_without_noise() -> None:
    days = np.arange(0.0, 42.0)
    result = fit_half_life(days, saturating(days, 0.1, 6.0))
    assert result.error is None
    assert result.half_life_days == pytest.approx(6.0, rel=1e-6)
    assert result.amplitude == pytest.approx(0.1, rel=1e-6)


def test_half_life_ci_coverage_and_weights() -> None:
    rng = np.random.default_rng(60)
    days = np.arange(0.0, 42.0)
    users = rng.integers(200, 2000, days.size).astype(float)
    covered = 0
    for _ in range(200):
        shift = saturating(days, -0.08, 5.0) + rng.normal(0, 0.5, days.size) / np.sqrt(users)
        result = fit_half_life(days, shift, weights=users)
        assert result.error is None
        assert result.ci_low is not None and result.ci_high is not None
        covered += result.ci_low <= 5.0 <= result.ci_high
    assert_rate(covered, 200, 0.95)


def test_half_life_reports_no_growth_on_noise() -> None:
    rng = np.random.default_rng(61)
    days = np.arange(0.0, 42.0)
    errors = [fit_half_life(days, rng.normal(0, 0.02, days.size)).error for _ in range(100)]
    assert errors.count(None) <= 5
    assert errors.count(ErrorCode.NO_GROWTH) >= 80


def test_half_life_not_identified_on_linear_ramp() -> None:
    rng = np.random.default_rng(62)
    days = np.arange(0.0, 30.0)
    result = fit_half_life(days, 0.002 * days + rng.normal(0, 0.002, days.size))
    assert result.error == ErrorCode.NOT_IDENTIFIED
    assert result.half_life_days is None


# --- Degenerate inputs: error codes, never exceptions ----------------------------------

EMPTY = SampleStats.from_values([])
ONE = SampleStats.from_values([1.0])
SOME = SampleStats.from_values([1.0, 2.0, 4.0])


@pytest.mark.parametrize(
    ("control", "treatment", "error"),
    [
        (EMPTY, SOME, ErrorCode.TOO_FEW_UNITS),
        (SOME, ONE, ErrorCode.TOO_FEW_UNITS),
        (SampleStats.from_values([0.1] * 5), SampleStats.from_values([0.3] * 4), "zero_variance"),
        (SampleStats.from_values([1.0, math.nan]), SOME, ErrorCode.NON_FINITE_INPUT),
        (SampleStats.from_values([math.inf, -math.inf, 1.0]), SOME, ErrorCode.NON_FINITE_INPUT),
    ],
)
def test_welch_degenerate_inputs(control: SampleStats, treatment: SampleStats, error: str) -> None:
    for result in (welch_test(control, treatment), relative_effect(control, treatment)):
        assert result.error == error
        assert result.effect is None and result.p_value is None and not result.significant


def test_relative_effect_zero_control_mean() -> None:
    result = relative_effect(SampleStats.from_values([-1.0, 1.0]), SOME)
    assert result.error == ErrorCode.ZERO_CONTROL_MEAN


def test_welch_one_constant_group_is_fine() -> None:
    result = welch_test(SampleStats.from_values([2.0] * 10), SampleStats.from_values([1.0, 2, 4]))
    assert result.ok and result.df == pytest.approx(2.0)


def test_ratio_and_cuped_degenerate_inputs() -> None:
    zero_denominator = PairStats.from_values([0.0, 0.0], [0.0, 0.0])
    fine = PairStats.from_values([1.0, 2.0, 0.0], [3.0, 4.0, 1.0])
    assert ratio_metric_stats(zero_denominator).error == ErrorCode.ZERO_DENOMINATOR
    assert ratio_metric_stats(PairStats.from_values([1.0], [2.0])).error == "too_few_units"
    nan_pairs = PairStats.from_values([1.0, math.nan], [2.0, 3.0])
    assert ratio_metric_stats(nan_pairs).error == ErrorCode.NON_FINITE_INPUT
    assert ratio_welch_test(zero_denominator, fine).error == ErrorCode.ZERO_DENOMINATOR
    assert cuped_adjust(PairStats.from_values([], []), fine).error == ErrorCode.TOO_FEW_UNITS
    assert cuped_welch_test(nan_pairs, fine).error == ErrorCode.NON_FINITE_INPUT
    constant = PairStats.from_values([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert cuped_welch_test(constant, constant).error == ErrorCode.ZERO_VARIANCE


def test_distribution_and_psi_degenerate_inputs() -> None:
    assert distribution_test([], [1.0, 2.0]).error == ErrorCode.TOO_FEW_UNITS
    assert distribution_test([math.nan], [1.0]).error == ErrorCode.TOO_FEW_UNITS
    assert distribution_test([3.0, 3.0], [3.0]).error == ErrorCode.ALL_VALUES_TIED
    assert math.isnan(psi([], [1.0]))
    assert psi([1.0, 1.0, 1.0], [1.0, 1.0]) == 0.0
    assert srm_test([math.nan, 3], [0.5, 0.5]).error == ErrorCode.NON_FINITE_INPUT


def test_time_course_degenerate_inputs() -> None:
    assert detect_change_points([]) == []
    assert detect_change_points([1.0, 5.0]) == []
    assert detect_change_points(np.full(30, 2.0)) == []
    assert detect_change_points(np.full(30, math.nan)) == []
    assert fit_half_life([0.0, 1.0], [0.0, 1.0]).error == ErrorCode.TOO_FEW_UNITS
    assert fit_half_life([0.0, 1, 2, 3], [0.5] * 4).error == ErrorCode.NO_GROWTH
    assert fit_half_life([0.0, 1, 2, math.nan], [0, 1, math.nan, 2]).error == "too_few_units"
    step = fit_half_life(np.arange(20.0), 0.1 * (np.arange(20.0) > 0))
    assert step.error == ErrorCode.NOT_IDENTIFIED


# --- Properties ------------------------------------------------------------------------

finite_values = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
p_values = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=40)


@given(p_values)
def test_bh_q_values_are_monotone_in_p_and_at_least_p(p: list[float]) -> None:
    q = benjamini_hochberg(p)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(q[order]) >= 0)
    assert np.all(q >= np.asarray(p))
    assert np.all(q <= 1)


@given(p_values)
def test_holm_is_never_below_bh(p: list[float]) -> None:
    assert np.all(holm_bonferroni(p) >= benjamini_hochberg(p) - 1e-15)


@given(st.lists(finite_values, max_size=30), st.lists(finite_values, max_size=30))
def test_sample_stats_addition_equals_stats_of_concatenation(
    first: list[float], second: list[float]
) -> None:
    merged = SampleStats.from_values(first) + SampleStats.from_values(second)
    direct = SampleStats.from_values(first + second)
    assert merged.n == direct.n
    assert merged.sum == pytest.approx(direct.sum, abs=1e-9)
    assert merged.sum_squares == pytest.approx(direct.sum_squares, rel=1e-12, abs=1e-9)


@given(
    st.lists(finite_values, min_size=2, max_size=30),
    st.lists(finite_values, min_size=2, max_size=30),
    st.floats(min_value=-1e4, max_value=1e4),
)
def test_welch_effect_unchanged_by_a_common_constant(
    control: list[float], treatment: list[float], constant: float
) -> None:
    before = welch_test(SampleStats.from_values(control), SampleStats.from_values(treatment))
    shifted = welch_test(
        SampleStats.from_values(np.add(control, constant)),
        SampleStats.from_values(np.add(treatment, constant)),
    )
    assume(before.ok and shifted.ok)
    assert shifted.effect == pytest.approx(before.effect, rel=1e-9, abs=1e-8)


@given(st.lists(finite_values, min_size=1, max_size=200), st.integers(1, 20))
def test_psi_of_a_sample_with_itself_is_zero(values: list[float], bins: int) -> None:
    assert psi(values, values, bins=bins) == 0.0


@given(
    st.lists(finite_values, min_size=1, max_size=100),
    st.lists(finite_values, min_size=1, max_size=100),
)
def test_psi_is_non_negative(expected: list[float], actual: list[float]) -> None:
    assert psi(expected, actual) >= 0.0


integer_samples = st.lists(st.integers(-1000, 1000), min_size=1, max_size=150)


@settings(max_examples=60)
@given(integer_samples, integer_samples, st.sampled_from(["cube", "exp"]))
def test_psi_invariant_to_monotone_transforms(
    expected: list[int], actual: list[int], transform: str
) -> None:
    # Distinct integers stay distinct floats under both transforms, so order is exact.
    def apply(values: list[int]) -> np.ndarray:
        v = np.asarray(values, dtype=float)
        return v**3 if transform == "cube" else np.exp(v / 500)

    assert psi(apply(expected), apply(actual)) == pytest.approx(
        psi(expected, actual), rel=1e-12, abs=1e-15
    )


def test_psi_invariant_to_log_on_continuous_data() -> None:
    rng = np.random.default_rng(70)
    control, treatment = rng.lognormal(0, 1, 3000), rng.lognormal(0.1, 1.1, 2500)
    assert psi(np.log(control), np.log(treatment)) == pytest.approx(psi(control, treatment))
