"""Behaviour drift: how the model's behaviour differs between cohorts, and since when.

The unit is the user, as in the randomisation. For a mean metric each user contributes their
post-period mean, compared by a Welch test after CUPED adjustment by the same user's
pre-period mean (Deng et al. 2013). A rate (the ``*_rate`` metrics: events per interaction) is
a ratio metric: the pooled share of interactions, sum over users of events divided by sum of
interactions, with its variance by the delta method over users (Deng et al. 2018), so that
a heavy user's many interactions are not counted as independent. Benjamini-Hochberg q-values
run across the whole table. Beside it: a distribution comparison per metric (Kolmogorov-Smirnov,
Mann-Whitney, PSI) and, on the daily treatment-minus-control series, where a shift began.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.features.metrics import BEHAVIOR_METRICS, RATIO_METRICS
from analytics.inference.changepoints import detect_change_points
from analytics.inference.cuped import cuped_welch_test
from analytics.inference.distributions import distribution_test, psi
from analytics.inference.ratios import ratio_welch_test
from analytics.inference.results import DriftRow
from analytics.inference.sufficient import PairStats
from analytics.inference.tables import with_q_values


def cuped_pairs(pre: pd.Series, post: pd.Series, pooled_pre_mean: float) -> PairStats:
    """(pre, post) pairs of users with a post value; a user without a pre value gets the
    pooled pre mean, which leaves their post value unadjusted."""
    has_post = post.notna()
    x = pre[has_post].fillna(pooled_pre_mean).to_numpy(dtype=float)
    return PairStats.from_values(x, post[has_post].to_numpy(dtype=float))


def ratio_pairs(post: pd.DataFrame, metric: str) -> PairStats:
    """Per user (numerator = events, denominator = interactions with a value) in the
    post-period, as the delta method needs them."""
    counted = post[post[f"{metric}__n"] > 0]
    return PairStats.from_values(
        counted[f"{metric}__sum"].to_numpy(dtype=float),
        counted[f"{metric}__n"].to_numpy(dtype=float),
    )


def compute_behavior_drift(
    users: pd.DataFrame,
    control: str,
    treatments: list[str],
    daily: pd.DataFrame | None = None,
    post_sums: pd.DataFrame | None = None,
    *,
    alpha: float = 0.05,
) -> list[DriftRow]:
    """The drift table: every behaviour metric, every treatment against ``control``.

    ``users`` holds one row per analysed user with ``variation`` and the per-period means of
    :func:`analytics.analysis.user_periods.user_means`; ``post_sums`` their post-period sums
    and counts with ``variation`` (for the ratio metrics; without it every metric is a mean metric).
    """
    rows: list[DriftRow] = []
    for metric in BEHAVIOR_METRICS:
        pre, post = f"{metric}__pre", f"{metric}__post"
        pooled_pre = float(users[pre].mean()) if users[pre].notna().any() else 0.0
        base = users[users["variation"] == control]
        control_pairs = cuped_pairs(base[pre], base[post], pooled_pre)
        for variation in treatments:
            group = users[users["variation"] == variation]
            c_values, t_values = base[post].dropna(), group[post].dropna()
            if metric in RATIO_METRICS and post_sums is not None:
                c_ratio = ratio_pairs(post_sums[post_sums["variation"] == control], metric)
                t_ratio = ratio_pairs(post_sums[post_sums["variation"] == variation], metric)
                result = ratio_welch_test(c_ratio, t_ratio, alpha)
                c_mean = c_ratio.x.sum / c_ratio.y.sum if c_ratio.y.sum else None
                t_mean = t_ratio.x.sum / t_ratio.y.sum if t_ratio.y.sum else None
            else:
                result = cuped_welch_test(
                    control_pairs, cuped_pairs(group[pre], group[post], pooled_pre), alpha
                )
                c_mean, t_mean = _mean(c_values), _mean(t_values)
            shape = distribution_test(c_values.to_numpy(), t_values.to_numpy())
            rows.append(
                DriftRow(
                    metric=metric,
                    variation=variation,
                    control_mean=c_mean,
                    variation_mean=t_mean,
                    effect=result.effect,
                    ci_low=result.ci_low,
                    ci_high=result.ci_high,
                    p_value=result.p_value,
                    n_control=len(c_values),
                    n_variation=len(t_values),
                    ks_p_value=shape.ks_p_value,
                    mw_p_value=shape.mw_p_value,
                    psi=_psi(c_values, t_values),
                    drift_began=_drift_began(daily, metric, control, variation),
                    error=result.error,
                )
            )
    return with_q_values(rows, alpha)


def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None


def _psi(control: pd.Series, treatment: pd.Series) -> float | None:
    if len(control) < 10 or len(treatment) < 10:
        return None
    value = psi(control.to_numpy(dtype=float), treatment.to_numpy(dtype=float))
    return None if not np.isfinite(value) else float(value)


def _drift_began(
    daily: pd.DataFrame | None, metric: str, control: str, variation: str
) -> str | None:
    """The first day of the last detected shift in the daily treatment-minus-control series."""
    if daily is None or daily.empty:
        return None
    wide = daily.pivot(index="date", columns="variation", values=metric)
    if control not in wide or variation not in wide:
        return None
    difference = (wide[variation] - wide[control]).dropna()
    if len(difference) < 8:
        return None
    points = detect_change_points(difference.to_numpy())
    if not points:
        return None
    return str(difference.index[points[-1]].date())
