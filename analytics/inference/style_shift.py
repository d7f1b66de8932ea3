"""Prompt-style shift: did users' prompting change because of the new model?

Everybody's style drifts with calendar time, so the estimate is a difference in differences:
the variation's mean per-user change (post-period mean minus pre-period mean) minus the
control's. It is computed twice, as a Welch test on per-user changes and as the interaction
coefficient of ``y ~ treated * post`` (OLS on per-user period means, standard errors
clustered by user; Bertrand, Duflo & Mullainathan 2004), which agree. Then the shift by days
since exposure, and the adaptation half-life fitted to it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from analytics.features.metrics import BUCKETS, DAY_BINS, STYLE_METRICS
from analytics.inference.curves import fit_half_life
from analytics.inference.results import BucketShift, HalfLifeResult, StyleShiftRow
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
    fit = smf.ols("y ~ treated * post", data=long).fit(
        cov_type="cluster", cov_kwds={"groups": long["user"]}
    )
    return float(fit.params["treated:post"]), float(fit.bse["treated:post"])


def compute_style_shift(
    users: pd.DataFrame,
    control: str,
    treatments: list[str],
    *,
    alpha: float = 0.05,
    min_pre: int = 1,
    min_post: int = 1,
) -> list[StyleShiftRow]:
    """The DiD table: every style metric, every treatment against ``control``, over users with
    at least ``min_pre`` and ``min_post`` interactions in the two periods.

    A single interaction makes a rate 0 or 1, and changes of +-1 from such users give the
    per-user changes tails heavy enough to make Welch's test liberal: on 200 A/A data sets
    the table alarmed on 8.5% of them with every user kept, 4.5% with at least two
    interactions on each side (the pipeline's default; tests/test_calibration.py).
    """
    users = users[(users["n_pre"] >= min_pre) & (users["n_post"] >= min_post)]
    rows: list[StyleShiftRow] = []
    for metric in STYLE_METRICS:
        change = changes(users, metric)
        base = change[users["variation"] == control].dropna()
        for variation in treatments:
            group = change[users["variation"] == variation].dropna()
            result = welch_test(
                SampleStats.from_values(base.to_numpy()),
                SampleStats.from_values(group.to_numpy()),
                alpha,
            )
            ols = did_ols(users, metric, control, variation) if result.error is None else None
            rows.append(
                StyleShiftRow(
                    metric=metric,
                    variation=variation,
                    did=result.effect,
                    ci_low=result.ci_low,
                    ci_high=result.ci_high,
                    p_value=result.p_value,
                    ols_did=ols[0] if ols else None,
                    ols_se=ols[1] if ols else None,
                    n_control=len(base),
                    n_variation=len(group),
                    error=result.error,
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
    """The DiD per bucket of days since exposure (0-2, 3-6, 7-13, 14+).

    ``bucket_means`` has one row per user and bucket with ``<metric>__bucket`` means.
    """
    pre = users.set_index("user_id")
    variation_of = pre["variation"]
    out: list[BucketShift] = []
    for metric in STYLE_METRICS:
        for bucket in BUCKETS:
            rows = bucket_means[bucket_means["bucket"] == bucket]
            user = rows["user_id"]
            change = (
                rows[f"{metric}__bucket"].to_numpy() - pre.loc[user, f"{metric}__pre"].to_numpy()
            )
            variations = variation_of.loc[user].to_numpy()
            base = change[(variations == control) & np.isfinite(change)]
            for variation in treatments:
                group = change[(variations == variation) & np.isfinite(change)]
                result = welch_test(
                    SampleStats.from_values(base), SampleStats.from_values(group), alpha
                )
                out.append(
                    BucketShift(
                        metric,
                        variation,
                        bucket,
                        result.effect,
                        result.ci_low,
                        result.ci_high,
                        result.p_value,
                        len(group),
                    )
                )
    return out


def bin_midpoints() -> dict[int, float]:
    """The middle of each bin of days since exposure (the last bin: a week after its start)."""
    ends = [*DAY_BINS[1:], DAY_BINS[-1] + 7]
    return {start: (start + end) / 2 for start, end in zip(DAY_BINS, ends, strict=True)}


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
