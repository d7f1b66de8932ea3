"""Prompt-style shift: do users write differently because of the new model?

Two questions, two estimates. *Do the arms write differently?* GrowthBook randomises users,
so comparing the arms' post-period per-user means is a causal estimate over every exposed
user with a post-period interaction, new users included: a user-level Welch test, CUPED-
adjusted by the user's pre-period mean where there is one and by a missing indicator where
there is not (:func:`compare_arms`). That is the headline (``effect``). *Did the same users
change?* Everybody's style drifts with calendar time, so over the users with both periods the
estimate is a difference in differences: the variation's mean per-user change (post-period
mean minus pre-period mean) minus the control's, computed as a Welch test on per-user changes
and as the interaction coefficient of ``y ~ treated * post`` (OLS on per-user period means,
standard errors clustered by user; Bertrand, Duflo & Mullainathan 2004), which agree. It is
kept as ``did`` and gives the adaptation its direction. Then both per bucket of days since
exposure, and the adaptation half-life fitted to the DiD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from analytics.features.metrics import BUCKETS, STYLE_METRICS, bin_midpoints
from analytics.inference.cuped import (
    CovariateStats,
    cuped_covariates_welch_test,
    missing_indicator_covariates,
)
from analytics.inference.curves import fit_half_life
from analytics.inference.results import BucketShift, HalfLifeResult, StyleShiftRow, TestResult
from analytics.inference.sufficient import SampleStats
from analytics.inference.tables import with_q_values
from analytics.inference.ttests import welch_test


def changes(users: pd.DataFrame, metric: str) -> pd.Series:
    """Each user's post-minus-pre change of ``metric`` (NaN without both periods)."""
    return users[f"{metric}__post"] - users[f"{metric}__pre"]


def did_ols(users: pd.DataFrame, metric: str, control: str, variation: str) -> tuple[float, float]:
    """DiD as the ``treated:post`` coefficient of OLS on per-user period means, with standard
    errors clustered by user. Returns (coefficient, standard error)."""
    both = users[users["variation"].isin([control, variation])]
    both = both[both[f"{metric}__pre"].notna() & both[f"{metric}__post"].notna()]
    long = pd.DataFrame(
        {
            "y": np.concatenate([both[f"{metric}__pre"], both[f"{metric}__post"]]),
            "treated": np.tile((both["variation"] == variation).to_numpy(dtype=float), 2),
            "post": np.repeat([0.0, 1.0], len(both)),
            "user": np.tile(np.arange(len(both)), 2),
        }
    )
    import statsmodels.formula.api as smf  # a second to import: only when a table is computed

    fit = smf.ols("y ~ treated * post", data=long).fit(
        cov_type="cluster", cov_kwds={"groups": long["user"]}
    )
    return float(fit.params["treated:post"]), float(fit.bse["treated:post"])


def arm_covariates(pre: ArrayLike, post: ArrayLike, fill: float) -> CovariateStats:
    """One arm's users with a (finite) post value: the post value as the outcome and
    ``[pre filled with fill, no pre value]`` as the covariates."""
    x = np.asarray(pre, dtype=float).ravel()
    y = np.asarray(post, dtype=float).ravel()
    has_post = np.isfinite(y)
    return CovariateStats.from_values(missing_indicator_covariates(x[has_post], fill), y[has_post])


def pooled_mean(values: ArrayLike) -> float:
    """The mean of the finite values, 0 without any (the fill of a missing pre-period)."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else 0.0


def compare_arms(
    control: CovariateStats, treatment: CovariateStats, alpha: float = 0.05
) -> TestResult:
    r"""The between-arms style shift: CUPED-adjusted Welch test of per-user post means.

    Each user i with a post-period mean :math:`y_i` counts; the covariates are the
    pre-period mean :math:`x_i` filled with the pooled pre mean :math:`c` where the user has no
    pre-period, and the indicator :math:`m_i` of that (the missing-indicator method):

    .. math::

        \hat\tau = (\bar y_t - \bar y_c) - \hat\theta^\top (\bar z_t - \bar z_c), \qquad
        z_i = (x_i \text{ or } c,\; m_i)

    the treated coefficient of OLS ``y ~ 1 + treated + x_filled + m``, with Welch's variance
    of the adjusted values (:func:`~analytics.inference.cuped.cuped_covariates_welch_test`).
    Because the pre-period (and whether a user has one) is fixed before randomisation, the
    adjustment keeps the estimate unbiased and only removes variance: returning users are
    adjusted by their own history, new users by their group's mean (the indicator's
    coefficient). Without any pre-period (every user new) no covariate has spread and the
    test is the plain Welch test of the post means; without new users it is
    :func:`~analytics.inference.cuped.cuped_welch_test`.

    References
    ----------
    Deng, A., Xu, Y., Kohavi, R. & Walker, T. (2013). Improving the Sensitivity of Online
    Controlled Experiments by Utilizing Pre-Experiment Data. *WSDM '13*, 123-132 (CUPED;
    section 3.3, several covariates as regression).
    White, I. R. & Thompson, S. G. (2005). Adjusting for partially missing baseline
    measurements in randomized trials. *Statistics in Medicine* 24(7), 993-1007; Groenwold,
    R. H. H. et al. (2012). *CMAJ* 184(11), 1265-1269 (the missing-indicator method: unbiased
    in randomised comparisons). Lin, W. (2013). *Annals of Applied Statistics* 7(1), 295-318
    (regression adjustment under randomisation).

    Checked against: ``statsmodels`` OLS ``y ~ treated + x_filled + m`` (coefficients to
    1e-9, HC2 SE within a few percent) and ``scipy.stats.ttest_ind(equal_var=False)`` when
    every user is new (tests/inference/test_style_shift.py).
    """
    return cuped_covariates_welch_test(control, treatment, alpha)


def compute_style_shift(
    users: pd.DataFrame,
    control: str,
    treatments: list[str],
    *,
    alpha: float = 0.05,
    min_pre: int = 1,
    min_post: int = 1,
) -> list[StyleShiftRow]:
    """The style shift table: every style metric, every treatment against ``control``.

    ``effect`` compares the arms over every user with a post-period value
    (:func:`compare_arms`); Benjamini-Hochberg q-values run across the table on its p-values.
    ``did`` is the difference in differences over users with at least ``min_pre`` and
    ``min_post`` interactions in the two periods.

    A single interaction makes a rate 0 or 1, and changes of +-1 from such users give the
    per-user changes tails heavy enough to make Welch's test liberal: on 200 A/A data sets
    the DiD alarmed on 8.5% of them with every user kept, 4.5% with at least two
    interactions on each side (the pipeline's default; tests/test_calibration.py). Post
    means alone are bounded by the same values and need no such floor.
    """
    did_users = users[(users["n_pre"] >= min_pre) & (users["n_post"] >= min_post)]
    rows: list[StyleShiftRow] = []
    for metric in STYLE_METRICS:
        pre, post = users[f"{metric}__pre"], users[f"{metric}__post"]
        fill = pooled_mean(pre)
        is_control = (users["variation"] == control).to_numpy()
        control_arm = arm_covariates(pre[is_control], post[is_control], fill)
        change = changes(did_users, metric)
        did_base = change[did_users["variation"] == control].dropna()
        for variation in treatments:
            is_treated = (users["variation"] == variation).to_numpy()
            treated_arm = arm_covariates(pre[is_treated], post[is_treated], fill)
            result = compare_arms(control_arm, treated_arm, alpha)
            did_group = change[did_users["variation"] == variation].dropna()
            did = welch_test(
                SampleStats.from_values(did_base.to_numpy()),
                SampleStats.from_values(did_group.to_numpy()),
                alpha,
            )
            ols = did_ols(did_users, metric, control, variation) if did.error is None else None
            rows.append(
                StyleShiftRow(
                    metric=metric,
                    variation=variation,
                    effect=result.effect,
                    ci_low=result.ci_low,
                    ci_high=result.ci_high,
                    p_value=result.p_value,
                    n_control=int(control_arm.n),
                    n_variation=int(treated_arm.n),
                    did=did.effect,
                    did_ci_low=did.ci_low,
                    did_ci_high=did.ci_high,
                    did_p_value=did.p_value,
                    ols_did=ols[0] if ols else None,
                    ols_se=ols[1] if ols else None,
                    did_n_control=len(did_base),
                    did_n_variation=len(did_group),
                    error=result.error,
                    did_error=did.error,
                )
            )
    return with_q_values(rows, alpha)


def compute_bucket_shifts(
    users: pd.DataFrame,
    bucket_means: pd.DataFrame,
    control: str,
    treatments: list[str],
    *,
    alpha: float = 0.05,
) -> list[BucketShift]:
    """The style shift per bucket of days since exposure (0-2, 3-6, 7-13, 14+): the arms
    compared on the users' bucket means as :func:`compare_arms` does (every user with a value
    in the bucket, CUPED-adjusted by the pre-period mean), and beside it the difference in
    differences of bucket mean minus pre-period mean over users with both.

    ``bucket_means`` has one row per user and bucket with ``<metric>__bucket`` means.
    """
    pre = users.set_index("user_id")
    # Each bucket's rows and where their users sit in ``pre``, found once for all metrics.
    in_bucket = {}
    for bucket in BUCKETS:
        rows = bucket_means[bucket_means["bucket"] == bucket]
        position = pre.index.get_indexer(pd.Index(rows["user_id"]))
        if (position < 0).any():
            raise KeyError("bucket_means has users that are not in users")
        in_bucket[bucket] = (rows, position, pre["variation"].to_numpy()[position])
    out: list[BucketShift] = []
    for metric in STYLE_METRICS:
        fill = pooled_mean(pre[f"{metric}__pre"])
        pre_values = pre[f"{metric}__pre"].to_numpy(dtype=float)
        for bucket in BUCKETS:
            rows, position, variations = in_bucket[bucket]
            after = rows[f"{metric}__bucket"].to_numpy(dtype=float)
            before = pre_values[position]
            change = after - before
            is_control = variations == control
            control_arm = arm_covariates(before[is_control], after[is_control], fill)
            did_base = change[is_control & np.isfinite(change)]
            for variation in treatments:
                is_treated = variations == variation
                result = compare_arms(
                    control_arm, arm_covariates(before[is_treated], after[is_treated], fill), alpha
                )
                did_group = change[is_treated & np.isfinite(change)]
                did = welch_test(
                    SampleStats.from_values(did_base), SampleStats.from_values(did_group), alpha
                )
                out.append(
                    BucketShift(
                        metric=metric,
                        variation=variation,
                        bucket=bucket,
                        effect=result.effect,
                        ci_low=result.ci_low,
                        ci_high=result.ci_high,
                        p_value=result.p_value,
                        n_control=int(np.isfinite(after[is_control]).sum()),
                        n_variation=int(np.isfinite(after[is_treated]).sum()),
                        did=did.effect,
                        did_ci_low=did.ci_low,
                        did_ci_high=did.ci_high,
                        did_p_value=did.p_value,
                        did_n_control=len(did_base),
                        did_n_variation=len(did_group),
                        error=result.error,
                        did_error=did.error,
                    )
                )
    return out


def estimate_half_life(
    composite: pd.DataFrame, control: str, variation: str, *, alpha: float = 0.05
) -> HalfLifeResult:
    """Fit the saturating curve to the treated-minus-control composite shift per bin.

    ``composite`` has one row per user and bin: ``variation``, ``bin``, ``score`` (the user's
    change in that bin along the adaptation direction).
    """
    days, shift, weights = [], [], []
    midpoints = bin_midpoints()
    for start, middle in midpoints.items():
        in_bin = composite[composite["bin"] == start]
        treated = in_bin.loc[in_bin["variation"] == variation, "score"].dropna()
        controls = in_bin.loc[in_bin["variation"] == control, "score"].dropna()
        if len(treated) < 5 or len(controls) < 5:
            continue
        variance = treated.var() / len(treated) + controls.var() / len(controls)
        days.append(middle)
        shift.append(treated.mean() - controls.mean())
        weights.append(1 / variance if variance > 0 else 0.0)
    return fit_half_life(np.asarray(days), np.asarray(shift), np.asarray(weights), alpha=alpha)
