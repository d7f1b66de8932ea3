"""Second-disruption risk: how likely rolling a user back to the old model breaks things for
them a second time.

For a user with adaptation p-value :math:`p` (analytics.analysis.adaptation), :math:`d` days since
first exposure, :math:`n` interactions since, and the experiment's adaptation half-life
:math:`h`:

.. math::

    \\text{risk} = a \\cdot \\bigl(1 - 2^{-d/h}\\bigr) \\cdot \\Bigl(\\tfrac12 + \\tfrac12\\,
    \\frac{n}{n + n_{1/2}}\\Bigr)

- :math:`a`, the evidence that the user adapted: for a scored user, one minus the local false
  discovery rate of their p-value among the scored users of their variation and method
  (``adaptation_evidence``), an estimate of the probability that they adapted. Users without
  a pre-period are scored too when they can be, by their own trajectory since first exposure
  (``learning_curve``): they get their own evidence like everybody else, so a new user whose
  prompts have not moved carries little risk instead of the base rate. Users who still cannot
  be scored (``new`` users with too few interactions since exposure, and
  ``insufficient_data``) get the share of scored users of their variation who adapted (the
  mean evidence): the base rate, so such a user's risk grows with tenure and use alone.
  Methods have different power, so each method's p-values get their own local false
  discovery rates when ``adaptation_method`` is given (rows without it, or empty, as in runs
  stored before it existed, are taken together by variation).
- :math:`1 - 2^{-d/h}`, the share of the full adaptation reachable in :math:`d` days if it
  follows the fitted saturating curve (``h`` defaults to ``DEFAULT_HALF_LIFE_DAYS`` when the
  analysis could not fit one).
- the activity factor: habits form with use; half its weight is reached at :math:`n_{1/2}`
  interactions.

Assumptions: a rollback disrupts in proportion to how far the user's habits moved towards the
new model; adaptation accrues like the population curve; the factors multiply (no adaptation,
no exposure or no use each mean no risk). The risk is monotone: a lower p-value (a higher
adaptation score; the local fdr of a decreasing p-value density rises with p), more days
exposed or more interactions never lower it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

DEFAULT_HALF_LIFE_DAYS = 3.0
DEFAULT_PRIOR = 0.5  # adapted share assumed for a variation with no scored user at all
ACTIVITY_HALF = 10.0  # interactions at which the activity factor is halfway


@dataclass(frozen=True)
class RiskParams:
    half_life_days: float | None = None
    activity_half: float = ACTIVITY_HALF


NULL_SHARE_LAMBDA = 0.5  # Storey's lambda: p-values above it are mostly from the null


def null_share(p_values: np.ndarray, lam: float = NULL_SHARE_LAMBDA) -> float:
    """Storey's estimate of the share of true nulls: ``#{p > lambda} / (n (1 - lambda))``,
    at most 1."""
    p = np.asarray(p_values, dtype=float)
    if len(p) == 0:
        return 1.0
    return min(1.0, float(np.mean(p > lam)) / (1.0 - lam))


def decreasing_density(p_values: np.ndarray) -> np.ndarray:
    """Grenander's estimate of a non-increasing density on [0, 1] at each p-value: the slopes
    of the least concave majorant of the empirical CDF, by weighted antitonic regression of
    the empirical slopes (pool adjacent violators, ``scipy.optimize.isotonic_regression``)."""
    p = np.clip(np.asarray(p_values, dtype=float), 0.0, 1.0)
    values, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    gaps = np.diff(np.r_[0.0, values])
    if gaps[0] == 0.0:  # a p-value of exactly 0: give it a sliver of width
        gaps[0] = min(1e-12, values[1] / 2 if len(values) > 1 else 1e-12)
    slopes = counts / len(p) / gaps
    fitted = isotonic_regression(slopes, weights=gaps, increasing=False).x
    return np.asarray(fitted[inverse], dtype=float)


def adaptation_evidence(p_values: np.ndarray) -> np.ndarray:
    """The probability each scored user adapted: one minus the local false discovery rate
    ``pi0 / f(p)`` (Efron et al. 2001), with Storey's ``pi0`` and Grenander's decreasing
    ``f``; non-increasing in p, about 0 for every user when nobody adapted."""
    p = np.asarray(p_values, dtype=float)
    if len(p) == 0:
        return p
    local_fdr = np.minimum(1.0, null_share(p) / decreasing_density(p))
    return np.asarray(1.0 - local_fdr, dtype=float)


def second_disruption_risk(
    evidence: np.ndarray,
    days_exposed: np.ndarray,
    n_post: np.ndarray,
    params: RiskParams = RiskParams(),
) -> np.ndarray:
    """The risk of each user, in [0, 1] (arrays of equal length)."""
    half_life = params.half_life_days or DEFAULT_HALF_LIFE_DAYS
    a = np.asarray(evidence, dtype=float)
    if not np.isfinite(a).all():
        raise ValueError("evidence must be known for every user (score_users fills it in)")
    a = np.clip(a, 0.0, 1.0)
    days = np.maximum(np.asarray(days_exposed, dtype=float), 0.0)
    saturation = 1.0 - np.power(2.0, -days / half_life)
    return np.asarray(a * saturation * activity_factor(n_post, params.activity_half), dtype=float)


def activity_factor(n_post: np.ndarray, activity_half: float = ACTIVITY_HALF) -> np.ndarray:
    """``1/2 + 1/2 n / (n + n_half)``: habits form with use, half the weight by ``n_half``
    interactions since first exposure."""
    n = np.maximum(np.asarray(n_post, dtype=float), 0.0)
    return np.asarray(0.5 + 0.5 * n / (n + activity_half), dtype=float)


def score_users(users: pd.DataFrame, as_of: pd.Timestamp, params: RiskParams) -> pd.DataFrame:
    """``users`` (users.csv columns) with ``evidence``, ``days_exposed`` and ``risk``."""
    out = users.copy()
    out["evidence"] = np.nan
    scored_rows = out["adaptation_p"].notna()
    # Each method's p-values are their own family (a method with less power has fewer small
    # p-values; pooled, its users would borrow the other method's local fdr).
    method = (
        out["adaptation_method"].fillna("").astype(str)
        if "adaptation_method" in out
        else pd.Series("", index=out.index)
    )
    for _, rows in out.groupby("variation"):
        scored = rows.index[scored_rows[rows.index]]
        prior = DEFAULT_PRIOR
        if len(scored):
            for _, family in method[scored].groupby(method[scored]):
                p_values = out.loc[family.index, "adaptation_p"].to_numpy(dtype=float)
                out.loc[family.index, "evidence"] = adaptation_evidence(p_values)
            prior = float(out.loc[scored, "evidence"].mean())
        out.loc[rows.index.difference(scored), "evidence"] = prior
    first = pd.to_datetime(out["first_exposure"], utc=True)
    out["days_exposed"] = ((as_of - first) / pd.Timedelta(days=1)).clip(lower=0.0)
    out["risk"] = second_disruption_risk(
        out["evidence"].to_numpy(dtype=float),
        out["days_exposed"].to_numpy(),
        out["n_post"].to_numpy(),
        params,
    )
    return out


def summarise_by_cohort(scored: pd.DataFrame) -> pd.DataFrame:
    """Per adaptation label: users, mean and 90th-percentile risk."""
    grouped = scored.groupby("adaptation_label")["risk"]
    return pd.DataFrame(
        {
            "users": grouped.size(),
            "mean_risk": grouped.mean(),
            "p90_risk": grouped.quantile(0.9),
        }
    ).sort_values("mean_risk")
