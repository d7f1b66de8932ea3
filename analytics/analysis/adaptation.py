"""Per-user adaptation: how far each user's prompting style moved, against control's null.

For each user with enough interactions before and after first exposure, the change of their
style metrics (post-period mean minus pre-period mean) is a vector :math:`\\Delta_u`. Control
users carry the same calendar drift, so their changes are the null: :math:`\\Delta_u` is
centred on the mean change of control users first exposed in the same week,
:math:`r_u = \\Delta_u - \\mu_{s(u)}`.

The score is covariance-aware and points where the variation moved users: with
:math:`\\Sigma` the covariance of control users' centred changes and :math:`\\delta` the
variation's difference in differences, Fisher's discriminant direction
:math:`w = \\Sigma^{-1}\\delta` and

.. math::

    s_u = \\frac{w^\\top r_u}{\\sqrt{\\beta + k_u\\,\\omega}},\\qquad
    k_u = \\frac{1}{n_{pre}} + \\frac{1}{n_{post}},\\quad \\omega = w^\\top W w,

where :math:`W` is the pooled within-user covariance of single interactions (from the SQL
cross-products) and :math:`\\beta = w^\\top \\Sigma w - \\overline{k}\\,\\omega` the part of
control users' spread that is not sampling noise. The denominator makes a light user's
noisy change and a heavy user's precise one comparable. The p-value is empirical: the share
of control users (others than the user) whose score is at least as high; Benjamini-Hochberg
then runs across the users of each variation. Control users are scored the same way, along
the direction of the first treatment, which shows the false-positive rate.

The direction is cross-fitted (Chernozhukov et al. 2018): users fall into five folds by a hash
of their id, and each fold is scored with the direction and null covariance estimated on the
other four, so that a user's own noise cannot pull the direction towards them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.analysis.user_periods import STYLE_COLUMNS, STYLE_PAIRS
from analytics.inference.multiple import benjamini_hochberg

STYLE = list(STYLE_COLUMNS)
FOLDS = 5  # cross-fitting folds for the direction (users are assigned by a hash of their id)
LABELS = ("adapted", "partial", "unadapted", "new", "insufficient_data")


@dataclass(frozen=True)
class AdaptationParams:
    min_pre: int = 3
    min_post: int = 3
    alpha: float = 0.05  # BH level for ``adapted``
    partial_p: float = 0.10  # unadjusted p below which a user not ``adapted`` is ``partial``
    stratum_days: float = 7.0  # calendar strata of first exposure for the control null
    min_stratum_controls: int = 30


def within_user_covariance(periods: pd.DataFrame) -> np.ndarray:
    """Pooled covariance of the style metrics between interactions of the same user-period:
    :math:`\\sum (\\sum ab - \\sum a \\sum b / n) / \\sum (n - 1)` over user-periods
    (``periods``: :func:`analytics.analysis.user_periods.load_within_user`)."""
    k = len(STYLE)
    out = np.zeros((k, k))
    rows = periods[periods["n"] >= 2]
    n = rows["n"].to_numpy()
    for i, a in enumerate(STYLE):
        for j, b in enumerate(STYLE):
            if i > j:
                continue
            if i == j:
                cross = rows[f"{a}__sumsq"].to_numpy()
            else:
                pair = f"{a}__x__{b}" if (a, b) in STYLE_PAIRS else f"{b}__x__{a}"
                cross = rows[pair].to_numpy()
            centred = cross - rows[f"{a}__sum"].to_numpy() * rows[f"{b}__sum"].to_numpy() / n
            out[i, j] = out[j, i] = centred.sum() / max(float((n - 1).sum()), 1.0)
    return out


def _strata(first_exposure: pd.Series, days: float) -> np.ndarray:
    start = first_exposure.min()
    elapsed = (first_exposure - start) / pd.Timedelta(days=days)
    return np.asarray(np.floor(elapsed.to_numpy(dtype=float)), dtype=int)


def _empirical_p(scores: np.ndarray, null: np.ndarray, is_null_member: np.ndarray) -> np.ndarray:
    """(1 + #{null >= s}) / (1 + #null), leaving a null member's own score out."""
    ordered = np.sort(null)
    at_least = len(ordered) - np.searchsorted(ordered, scores, side="left")
    at_least = at_least - is_null_member.astype(int)
    size = len(ordered) - is_null_member.astype(int)
    return np.asarray((1.0 + at_least) / (1.0 + size), dtype=float)


def score_adaptation(
    users: pd.DataFrame,
    moments: pd.DataFrame,
    control: str,
    treatments: list[str],
    params: AdaptationParams = AdaptationParams(),
) -> pd.DataFrame:
    """Scores, p-values and labels for every user of ``control`` and ``treatments``
    (``moments``: a sample of users' second moments, :func:`load_within_user`).

    Returns ``users`` with ``adaptation_score``, ``adaptation_p``, ``adaptation_q``,
    ``adaptation_label``.
    """
    out = users.copy()
    change = np.column_stack([out[f"{m}__post"] - out[f"{m}__pre"] for m in STYLE])
    eligible = (
        (out["n_pre"] >= params.min_pre).to_numpy()
        & (out["n_post"] >= params.min_post).to_numpy()
        & np.isfinite(change).all(axis=1)
    )
    is_control = (out["variation"] == control).to_numpy()
    strata = _strata(out["first_exposure"], params.stratum_days)
    residual = np.full_like(change, np.nan)
    reference = eligible & is_control
    overall = change[reference].mean(axis=0) if reference.any() else np.zeros(len(STYLE))
    for stratum in np.unique(strata):
        members = strata == stratum
        controls = members & reference
        centre = (
            change[controls].mean(axis=0)
            if controls.sum() >= params.min_stratum_controls
            else overall
        )
        residual[members] = change[members] - centre
    within = within_user_covariance(moments)
    k_u = 1.0 / np.maximum(out["n_pre"].to_numpy(), 1) + 1.0 / np.maximum(
        out["n_post"].to_numpy(), 1
    )
    scores = np.full(len(out), np.nan)
    p_values = np.full(len(out), np.nan)
    q_values = np.full(len(out), np.nan)
    fold = (pd.util.hash_pandas_object(out["user_id"], index=False).to_numpy() % FOLDS).astype(int)
    if reference.sum() >= 10 * FOLDS and treatments:
        for variation in [control, *treatments]:
            direction_of = treatments[0] if variation == control else variation
            treated = (out["variation"] == direction_of).to_numpy() & eligible
            projected = np.full(len(out), np.nan)
            for k in range(FOLDS):
                # Cross-fitting: the direction is estimated without the scored users, or it
                # would bend towards their own noise and make them look adapted.
                rest = fold != k
                null_cov = np.cov(residual[reference & rest], rowvar=False)
                delta = residual[treated & rest].mean(axis=0) - residual[reference & rest].mean(
                    axis=0
                )
                ridge = 1e-9 * np.trace(null_cov) * np.eye(len(STYLE))
                # The pseudo-inverse copes with a metric that never varies.
                w = np.linalg.pinv(null_cov + ridge) @ np.nan_to_num(delta)
                omega = float(w @ within @ w)
                beta = max(
                    float(w @ null_cov @ w) - float(k_u[reference & rest].mean()) * omega, 0.0
                )
                here = fold == k
                scale = np.sqrt(beta + k_u[here] * omega)
                projected[here] = residual[here] @ w / np.where(scale > 0, scale, np.nan)
            members = (out["variation"] == variation).to_numpy() & eligible
            null = projected[reference]
            scores[members] = projected[members]
            p_values[members] = _empirical_p(projected[members], null, is_control[members])
            q_values[members] = benjamini_hochberg(p_values[members])
    out["adaptation_score"] = scores
    out["adaptation_p"] = p_values
    out["adaptation_q"] = q_values
    label = np.where(
        q_values <= params.alpha,
        "adapted",
        np.where(p_values <= params.partial_p, "partial", "unadapted"),
    )
    label = np.where(np.isnan(p_values), "insufficient_data", label)
    label = np.where(out["n_pre"].to_numpy() == 0, "new", label)
    out["adaptation_label"] = label
    return out


def label_counts(scored: pd.DataFrame, variation: str | None = None) -> dict[str, int]:
    """How many users carry each label (of one variation, or of all)."""
    rows = scored if variation is None else scored[scored["variation"] == variation]
    counted = rows["adaptation_label"].value_counts()
    return {
        label: int(counted.get(label, 0))
        for label in ("adapted", "partial", "unadapted", "new", "insufficient_data")
    }
