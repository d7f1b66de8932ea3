"""The style shift over all randomised users, against independent implementations.

The between-arms estimate is the treated coefficient of OLS ``y ~ 1 + treated + x_filled +
missing`` (statsmodels, with HC2 standard errors, Lin 2013); without any pre-period it is
Welch's test (``scipy.stats.ttest_ind(equal_var=False)``); without new users it is the
one-covariate CUPED of :func:`analytics.inference.cuped.cuped_welch_test`. Seeded simulations
plant a shift among new users only, among returning users only, and none at all.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats as sps

from analytics.features.metrics import BUCKETS, STYLE_METRICS
from analytics.inference.cuped import (
    CovariateStats,
    cuped_adjust_covariates,
    cuped_welch_test,
    missing_indicator_covariates,
)
from analytics.inference.results import ErrorCode
from analytics.inference.style_shift import (
    arm_covariates,
    compare_arms,
    compute_bucket_shifts,
    compute_style_shift,
    pooled_mean,
)
from analytics.inference.sufficient import PairStats

ALPHA = 0.05
NULL_DATA_SETS = 200


def simulate_arm(
    rng: np.random.Generator,
    n: int,
    new_share: float,
    shift_new: float,
    shift_returning: float,
    new: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (pre mean, post mean): a persistent trait seen in both periods with noise;
    the ``new`` users (else ``new_share`` of them at random) have no pre-period (NaN)."""
    trait = rng.normal(0.0, 1.0, n)
    pre = trait + rng.normal(0.0, 0.6, n)
    post = 0.3 + trait + rng.normal(0.0, 0.6, n)
    new = rng.random(n) < new_share if new is None else new
    post = post + np.where(new, shift_new, shift_returning)
    return np.where(new, np.nan, pre), post


def simulate_users(
    rng: np.random.Generator,
    n: int,
    *,
    new_share: float = 0.2,
    shift_new: float = 0.0,
    shift_returning: float = 0.0,
    variations: tuple[str, ...] = ("0", "1"),
) -> pd.DataFrame:
    """A users frame as the pipeline builds it: every style metric's ``__pre``/``__post``
    mean, ``n_pre``/``n_post``; treated arms (all but the first) get the planted shifts."""
    frames = []
    for index, variation in enumerate(variations):
        new = rng.random(n) < new_share
        frame = pd.DataFrame({"variation": variation, "n_pre": np.where(new, 0, 5), "n_post": 5})
        planted = (shift_new, shift_returning) if index > 0 else (0.0, 0.0)
        for metric in STYLE_METRICS:
            pre, post = simulate_arm(rng, n, new_share, *planted, new=new)
            frame[f"{metric}__pre"], frame[f"{metric}__post"] = pre, post
        frames.append(frame)
    users = pd.concat(frames, ignore_index=True)
    users.insert(0, "user_id", [f"u{i}" for i in range(len(users))])
    return users


def ols_with_indicator(
    pre: np.ndarray, post: np.ndarray, treated: np.ndarray
) -> sm.regression.linear_model.RegressionResultsWrapper:
    missing = np.isnan(pre)
    fill = float(pre[~missing].mean()) if (~missing).any() else 0.0
    design = np.column_stack(
        [np.ones_like(post), treated, np.where(missing, fill, pre), missing.astype(float)]
    )
    return sm.OLS(post, design).fit(cov_type="HC2")


def split(
    pre: np.ndarray, post: np.ndarray, treated: np.ndarray
) -> tuple[CovariateStats, CovariateStats]:
    fill = pooled_mean(pre)
    control = arm_covariates(pre[treated == 0], post[treated == 0], fill)
    return control, arm_covariates(pre[treated == 1], post[treated == 1], fill)


def pooled_sample(
    rng: np.random.Generator, n: int, new_share: float, shift: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pre_c, post_c = simulate_arm(rng, n, new_share, 0.0, 0.0)
    pre_t, post_t = simulate_arm(rng, n + 37, new_share, shift + 0.4, shift)
    treated = np.r_[np.zeros(n), np.ones(n + 37)]
    return np.r_[pre_c, pre_t], np.r_[post_c, post_t], treated


# --- The estimator against independent implementations ---------------------------------------


def test_covariate_stats_hold_the_sums_and_merge() -> None:
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(40, 2)), rng.normal(size=40)
    stats = CovariateStats.from_values(z, y)
    assert stats.n == 40 and stats.sum_y == pytest.approx(y.sum())
    assert np.allclose(stats.sum_zz, z.T @ z) and np.allclose(stats.sum_zy, z.T @ y)
    merged = CovariateStats.from_values(z[:15], y[:15]) + CovariateStats.from_values(z[15:], y[15:])
    assert np.allclose(merged.sum_zz, stats.sum_zz) and merged.sum_yy == pytest.approx(stats.sum_yy)
    assert missing_indicator_covariates([1.0, np.nan], 7.0).tolist() == [[1.0, 0.0], [7.0, 1.0]]
    assert CovariateStats.from_values([], []).n == 0  # one covariate, no units
    assert CovariateStats.from_values([1.0, 2.0], [3.0, 4.0]).sum_zz == ((5.0,),)


@pytest.mark.parametrize("n", [40, 800])
def test_effect_and_coefficients_are_ols_with_a_missing_indicator(n: int) -> None:
    rng = np.random.default_rng(n)
    pre, post, treated = pooled_sample(rng, n, 0.25, 0.3)
    control, treatment = split(pre, post, treated)
    result = compare_arms(control, treatment)
    adjustment = cuped_adjust_covariates(control, treatment)
    ols = ols_with_indicator(pre, post, treated)
    assert result.effect == pytest.approx(ols.params[1], rel=1e-9)
    assert adjustment.coefficients == pytest.approx(list(ols.params[2:]), rel=1e-9)
    assert adjustment.theta == adjustment.coefficients[0]
    # Welch on the adjusted values ignores theta's noise: HC2 within a few percent.
    assert result.se == pytest.approx(ols.bse[1], rel=0.03)


def test_the_fill_value_of_a_missing_pre_period_changes_nothing() -> None:
    rng = np.random.default_rng(2)
    pre, post, treated = pooled_sample(rng, 300, 0.3, 0.2)
    results = []
    for fill in (pooled_mean(pre), 0.0, -50.0):
        control = arm_covariates(pre[treated == 0], post[treated == 0], fill)
        results.append(
            compare_arms(control, arm_covariates(pre[treated == 1], post[treated == 1], fill))
        )
    for other in results[1:]:
        assert other.effect == pytest.approx(results[0].effect, rel=1e-9)
        assert other.se == pytest.approx(results[0].se, rel=1e-6)


def test_every_user_new_is_the_plain_welch_test() -> None:
    rng = np.random.default_rng(3)
    _, post_c = simulate_arm(rng, 70, 1.0, 0.0, 0.0)
    pre_t, post_t = simulate_arm(rng, 90, 1.0, 0.5, 0.0)
    assert np.isnan(pre_t).all()
    fill = pooled_mean(pre_t)  # no pre-period at all: 0, not a NaN mean
    assert fill == 0.0
    result = compare_arms(
        arm_covariates(np.full(70, np.nan), post_c, fill), arm_covariates(pre_t, post_t, fill)
    )
    welch = sps.ttest_ind(post_t, post_c, equal_var=False)
    low, high = welch.confidence_interval(0.95)
    assert result.effect == pytest.approx(post_t.mean() - post_c.mean(), rel=1e-12)
    assert result.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=1e-9)
    assert result.df == pytest.approx(welch.df, rel=1e-9)


def test_without_new_users_it_is_one_covariate_cuped() -> None:
    rng = np.random.default_rng(4)
    pre, post, treated = pooled_sample(rng, 500, 0.0, 0.2)
    control, treatment = split(pre, post, treated)
    result = compare_arms(control, treatment)
    c, t = treated == 0, treated == 1
    cuped = cuped_welch_test(
        PairStats.from_values(pre[c], post[c]), PairStats.from_values(pre[t], post[t])
    )
    for field in ("effect", "se", "p_value", "ci_low", "ci_high", "df"):
        assert getattr(result, field) == pytest.approx(getattr(cuped, field), rel=1e-9), field
    assert cuped_adjust_covariates(control, treatment).coefficients[1] == 0.0


def test_the_adjustment_reduces_variance_with_new_users_among_them() -> None:
    rng = np.random.default_rng(5)
    pre, post, treated = pooled_sample(rng, 2000, 0.2, 0.0)
    control, treatment = split(pre, post, treated)
    adjustment = cuped_adjust_covariates(control, treatment)
    # Returning users' post variance is 1.36 of which 1 is the trait the pre-period sees.
    assert adjustment.variance_reduction is not None and adjustment.variance_reduction > 0.4


# --- Degenerate data ----------------------------------------------------------------------


def test_degenerate_arms_give_error_codes_not_warnings() -> None:
    one = arm_covariates([np.nan], [1.0], 0.0)
    two = arm_covariates([1.0, np.nan], [1.0, 2.0], 1.0)
    assert compare_arms(one, two).error == ErrorCode.TOO_FEW_UNITS
    assert compare_arms(arm_covariates([], [], 0.0), two).error == ErrorCode.TOO_FEW_UNITS
    flat = arm_covariates([1.0, 2.0, np.nan], [3.0, 3.0, 3.0], 1.5)
    assert compare_arms(flat, flat).error == ErrorCode.ZERO_VARIANCE
    nan_post = arm_covariates([1.0, np.nan, 2.0], [np.nan, 1.0, 2.0], 1.5)
    assert nan_post.n == 2  # a user without a post value does not count
    infinite = CovariateStats.from_values(np.array([[np.inf, 0.0], [1.0, 0.0]]), [1.0, 2.0])
    assert compare_arms(infinite, two).error == ErrorCode.NON_FINITE_INPUT
    # A pre-period constant among the users who have one is collinear with the indicator.
    constant = arm_covariates([2.0, 2.0, np.nan, np.nan], [1.0, 2.0, 4.0, 3.0], 2.0)
    result = compare_arms(constant, arm_covariates([2.0, np.nan, 2.0], [2.0, 6.0, 1.0], 2.0))
    assert result.ok and result.effect is not None and np.isfinite(result.effect)


def test_all_new_users_in_four_arms_are_compared() -> None:
    # The real study that motivated the between-arms table: four arms, nobody with history.
    users = simulate_users(
        np.random.default_rng(6), 400, new_share=1.0, shift_new=0.5, variations=("0", "1", "2", "3")
    )
    rows = compute_style_shift(users, "0", ["1", "2", "3"], min_pre=2, min_post=2)
    assert len(rows) == 3 * len(STYLE_METRICS)
    for row in rows:
        assert row.error is None and row.effect is not None and row.q_value is not None
        assert (row.n_control, row.n_variation) == (400, 400)
        assert row.did is None and row.did_error == ErrorCode.TOO_FEW_UNITS
        assert (row.did_n_control, row.did_n_variation) == (0, 0)
        assert row.ols_did is None and row.ols_se is None
        assert row.effect > 0 and row.significant


def test_a_single_user_per_arm_and_zero_variance_tables_do_not_warn() -> None:
    users = simulate_users(np.random.default_rng(7), 1)
    rows = compute_style_shift(users, "0", ["1"])
    assert all(r.error == ErrorCode.TOO_FEW_UNITS and r.q_value is None for r in rows)
    assert all(not r.significant for r in rows)
    flat = simulate_users(np.random.default_rng(8), 20)
    for metric in STYLE_METRICS:
        flat[f"{metric}__pre"], flat[f"{metric}__post"] = 1.0, 1.0
    rows = compute_style_shift(flat, "0", ["1"])
    assert all(r.error == ErrorCode.ZERO_VARIANCE for r in rows)
    assert all(r.did_error == ErrorCode.ZERO_VARIANCE for r in rows)


# --- The table on planted shifts and on the null ------------------------------------------


def test_a_shift_among_new_users_only_is_found_between_arms() -> None:
    users = simulate_users(
        np.random.default_rng(10), 600, new_share=0.5, shift_new=0.6, shift_returning=0.0
    )
    rows = compute_style_shift(users, "0", ["1"])
    for row in rows:
        # New users are half of each arm: the shift between arms is about 0.3.
        assert row.effect is not None and 0.1 < row.effect < 0.5, row.metric
        assert row.significant, row.metric
        # The DiD sees returning users only, who did not change.
        assert row.did is not None and row.did_p_value is not None
        assert row.did_n_variation < row.n_variation
    assert sum(r.did_p_value < ALPHA for r in rows) <= 2  # type: ignore[operator]


def test_a_shift_among_returning_users_is_found_by_both() -> None:
    users = simulate_users(
        np.random.default_rng(11), 500, new_share=0.2, shift_new=0.0, shift_returning=0.4
    )
    for row in compute_style_shift(users, "0", ["1"]):
        assert row.effect is not None and row.effect > 0 and row.significant, row.metric
        assert row.did is not None and row.did > 0, row.metric
        assert row.did_p_value is not None and row.did_p_value < ALPHA, row.metric
        assert row.ols_did == pytest.approx(row.did, abs=1e-9)


@pytest.mark.slow
def test_the_table_alarms_at_most_at_alpha_under_the_null() -> None:
    # A quarter of a minute: each table fits seven clustered OLS DiDs beside its own tests.
    rng = np.random.default_rng(12)
    alarms, p_values = 0, []
    for _ in range(NULL_DATA_SETS):
        users = simulate_users(rng, 150, new_share=0.2)
        rows = compute_style_shift(users, "0", ["1"])
        alarms += any(r.significant for r in rows)
        p_values += [r.p_value for r in rows]
    upper = sps.binom.ppf(0.975, NULL_DATA_SETS, ALPHA)
    assert alarms <= upper, f"{alarms} of {NULL_DATA_SETS} null data sets alarmed"
    assert sps.kstest(p_values, "uniform").pvalue > 0.01


# --- By days since exposure -------------------------------------------------------------


def test_bucket_shifts_compare_all_users_and_keep_the_did() -> None:
    rng = np.random.default_rng(13)
    users = simulate_users(rng, 200, new_share=0.3, shift_new=0.5, shift_returning=0.5)
    rows = []
    for bucket in BUCKETS:
        frame = users[["user_id"]].assign(bucket=bucket)
        for metric in STYLE_METRICS:
            frame[f"{metric}__bucket"] = users[f"{metric}__post"] + rng.normal(0, 0.1, len(users))
        rows.append(frame)
    bucket_means = pd.concat(rows, ignore_index=True)
    # Nobody active in the last bucket but new control users and one treated user.
    last = bucket_means["bucket"] == "14+"
    returning = bucket_means["user_id"].map(users.set_index("user_id")["n_pre"]) > 0
    treated = bucket_means["user_id"].map(users.set_index("user_id")["variation"]) == "1"
    bucket_means = bucket_means[~last | (~returning & ~treated)]
    shifts = compute_bucket_shifts(users, bucket_means, "0", ["1"])
    assert len(shifts) == len(STYLE_METRICS) * len(BUCKETS)
    for shift in shifts:
        if shift.bucket == "14+":
            assert shift.error == ErrorCode.TOO_FEW_UNITS and shift.n_variation == 0
            assert shift.did_error == ErrorCode.TOO_FEW_UNITS and shift.did_n_control == 0
            continue
        assert shift.error is None and shift.effect is not None and shift.effect > 0.2
        assert (shift.n_control, shift.n_variation) == (200, 200)
        assert shift.did is not None and shift.did_n_variation < shift.n_variation
        # The bucket estimate is the same procedure as the table's.
        metric = shift.metric
        in_bucket = bucket_means[bucket_means["bucket"] == shift.bucket].merge(users, on="user_id")
        ols = ols_with_indicator(
            in_bucket[f"{metric}__pre"].to_numpy(),
            in_bucket[f"{metric}__bucket"].to_numpy(),
            (in_bucket["variation"] == "1").to_numpy(dtype=float),
        )
        assert shift.effect == pytest.approx(ols.params[1], rel=1e-9)
