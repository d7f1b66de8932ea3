"""Second-disruption risk: how likely rolling a user back to the old model breaks things for
them a second time.

For a user with adaptation p-value :math:`p` (analytics.adaptation), :math:`d` days since
first exposure, :math:`n` interactions since, and the experiment's adaptation half-life
:math:`h`:

.. math::

    \\text{risk} = a \\cdot \\bigl(1 - 2^{-d/h}\\bigr) \\cdot \\Bigl(\\tfrac12 + \\tfrac12\\,
    \\frac{n}{n + n_{1/2}}\\Bigr)

- :math:`a`, the evidence that the user adapted: :math:`1 - p` for a scored user; 1 for a
  ``new`` user, who only ever knew the new model; 0.5 for ``insufficient_data`` (unknown).
- :math:`1 - 2^{-d/h}`, the share of the full adaptation reachable in :math:`d` days if it
  follows the fitted saturating curve (``h`` defaults to ``DEFAULT_HALF_LIFE_DAYS`` when the
  analysis could not fit one).
- the activity factor: habits form with use; half its weight is reached at :math:`n_{1/2}`
  interactions.

Assumptions: a rollback disrupts in proportion to how far the user's habits moved towards the
new model; adaptation accrues like the population curve; the factors multiply (no adaptation,
no exposure or no use each mean no risk). The risk is monotone: a lower p-value (a higher
adaptation score), more days exposed or more interactions never lower it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_HALF_LIFE_DAYS = 3.0
ACTIVITY_HALF = 10.0  # interactions at which the activity factor is halfway


@dataclass(frozen=True)
class RiskParams:
    half_life_days: float | None = None
    activity_half: float = ACTIVITY_HALF


def second_disruption_risk(
    label: np.ndarray,
    adaptation_p: np.ndarray,
    days_exposed: np.ndarray,
    n_post: np.ndarray,
    params: RiskParams = RiskParams(),
) -> np.ndarray:
    """The risk of each user, in [0, 1] (arrays of equal length; NaN p for unscored users)."""
    half_life = params.half_life_days or DEFAULT_HALF_LIFE_DAYS
    label = np.asarray(label, dtype=object)
    p = np.asarray(adaptation_p, dtype=float)
    evidence = np.where(np.isfinite(p), 1.0 - np.clip(p, 0.0, 1.0), 0.5)
    evidence = np.where(label == "new", 1.0, evidence)
    days = np.maximum(np.asarray(days_exposed, dtype=float), 0.0)
    saturation = 1.0 - np.power(2.0, -days / half_life)
    n = np.maximum(np.asarray(n_post, dtype=float), 0.0)
    activity = 0.5 + 0.5 * n / (n + params.activity_half)
    return np.asarray(evidence * saturation * activity, dtype=float)


def score_users(users: pd.DataFrame, as_of: pd.Timestamp, params: RiskParams) -> pd.DataFrame:
    """``users`` (users.csv columns) with ``days_exposed`` and ``risk``."""
    out = users.copy()
    first = pd.to_datetime(out["first_exposure"], utc=True)
    out["days_exposed"] = ((as_of - first) / pd.Timedelta(days=1)).clip(lower=0.0)
    out["risk"] = second_disruption_risk(
        out["adaptation_label"].to_numpy(),
        out["adaptation_p"].to_numpy(dtype=float),
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
