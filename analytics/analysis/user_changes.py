"""Each user's style change along the adaptation curve, and its noise: what the adaptation
score (:mod:`analytics.analysis.adaptation`) projects and tests.

A user's style metrics on one interaction, a vector :math:`x_i` of the ``K`` style metrics,
follow

.. math::

    x_i = b_u + g(t_i)\\,A_u + e_i, \\qquad \\mathrm{Cov}(e_i) = W,

with :math:`b_u` the user's baseline, :math:`A_u` their change at full adaptation,
:math:`t_i` the days since first exposure and :math:`g` the adaptation curve: 0 before
exposure, :math:`1 - 2^{-t/h}` after it (:math:`h` the adaptation half-life). Baselines
differ between the users of a population: mean :math:`m`, covariance :math:`T`. Two
estimates of :math:`A_u` are independent under the model:

- *within the user*, the slope of their metrics on the curve:
  :math:`\\hat A_w = (S_{gx} - \\bar g S_x) / S^c_{gg}`, covariance
  :math:`C_w = W / S^c_{gg}` (:math:`S^c_{gg} = \\sum_i (g_i - \\bar g)^2`);
- *from their level*, against the population's baseline:
  :math:`\\hat A_l = (\\bar x_u - m) / \\bar g`, covariance
  :math:`C_l = (T + W / n) / \\bar g^2`.

Their best linear unbiased combination is the change :math:`\\Delta_u` and its noise
:math:`V_u` (:func:`estimate_changes`). When users' baselines differ a lot (:math:`T` large)
only their own slope counts; when everybody starts alike (:math:`T = 0`) a user with few
interactions before exposure is compared with where the population started: empirical Bayes
shrinkage of the baseline (Efron & Morris 1975). With the step curve (:math:`g = 1` after
exposure) and :math:`T \\to \\infty`, :math:`\\Delta_u` is the post-period mean minus the
pre-period mean and :math:`V_u = (1/n_{pre} + 1/n_{post})\\,W`: the plain change and its
noise factor :math:`k_u`.

The two methods of the score differ only in the interactions that enter the sums
(:func:`analytics.analysis.user_periods.roll_up_curves`): ``pre_post`` takes the
pre-period (where :math:`g = 0`) and the post-period; ``learning_curve``, for users without
enough of a pre-period, only the post-period, where the curve's rise from the first days on
the feature to the later ones identifies the change.

One function per step, in the order :func:`user_changes` runs them: :func:`curve_weights`
(:math:`g`), :func:`exposure_strata` and :func:`centre_changes` (the level against the
population of the same calendar week), :func:`within_user_covariance` (:math:`W`),
:func:`baseline_covariance` (:math:`T`), :func:`estimate_changes`
(:math:`\\Delta_u, V_u`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analytics.analysis.user_periods import STYLE_COLUMNS, STYLE_PAIRS, roll_up_curves
from analytics.features.metrics import DAY_BINS, bin_midpoints

STYLE = list(STYLE_COLUMNS)
PRE_BIN = -1  # load_user_bins' bin of the interactions before first exposure


def curve_weights(half_life_days: float | None) -> dict[int, float]:
    r"""The adaptation curve in each bin of days since first exposure,
    :math:`g_b = 1 - 2^{-t_b / h}` at the bin's middle :math:`t_b`
    (:func:`analytics.features.metrics.bin_midpoints`), and 0 before exposure.

    ``half_life_days`` None (or not positive) gives the step curve, 1 in every bin after
    exposure: the plain post-minus-pre change.

    Checked against: the formula by hand at a few bins (tests).
    """
    middle = bin_midpoints()
    weights = {PRE_BIN: 0.0}
    for start in DAY_BINS:
        if half_life_days is None or not half_life_days > 0:
            weights[start] = 1.0
        else:
            weights[start] = float(1.0 - 2.0 ** (-middle[start] / half_life_days))
    return weights


def within_user_covariance(periods: pd.DataFrame) -> np.ndarray:
    r"""Pooled covariance of the style metrics between interactions of the same user-period.

    With :math:`g` running over user-periods with :math:`n_g \ge 2` interactions and
    :math:`a, b` style metrics,

    .. math::

        W_{ab} = \frac{\sum_g \left(\sum_{i \in g} a_i b_i
            - \sum_{i \in g} a_i \sum_{i \in g} b_i / n_g\right)}{\sum_g (n_g - 1)}

    the within-group covariance of one-way ANOVA: each user-period's own mean is taken out,
    so :math:`W` is the noise of a single interaction around its user's mean in that period.

    Parameters
    ----------
    periods : pandas.DataFrame
        One row per user-period (:func:`analytics.analysis.user_periods.load_within_user`):
        ``n``, ``{metric}__sum``, ``{metric}__sumsq`` and ``{a}__x__{b}`` for each pair of
        :data:`analytics.analysis.user_periods.STYLE_PAIRS`.

    Returns
    -------
    numpy.ndarray
        Symmetric ``len(STYLE)`` x ``len(STYLE)`` matrix in the order of :data:`STYLE`;
        zeros when no user-period has two interactions.

    References
    ----------
    Johnson, R. A. & Wichern, D. W. (2007). *Applied Multivariate Statistical Analysis*, 6th
    ed., chapter 6 (the pooled within-group covariance :math:`S_{pooled}`).

    Checked against: ``numpy.cov(ddof=1)`` of each user-period's raw interactions, weighted by
    :math:`n_g - 1` (tests).
    """
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


def exposure_strata(first_exposure: pd.Series, days: float) -> np.ndarray:
    r"""Calendar stratum of each user's first exposure,
    :math:`s(u) = \lfloor (t_u - \min_v t_v) / \text{days} \rfloor`.

    Checked against: day counts by hand (tests).
    """
    start = first_exposure.min()
    elapsed = (first_exposure - start) / pd.Timedelta(days=days)
    return np.asarray(np.floor(elapsed.to_numpy(dtype=float)), dtype=int)


def centre_changes(
    change: np.ndarray, strata: np.ndarray, reference: np.ndarray, min_stratum_controls: int
) -> np.ndarray:
    r"""Values net of the mean that the other reference users of the same stratum show.

    .. math::

        r_u = \Delta_u - \mu_{s(u)}^{(-u)}, \qquad
        \mu_s^{(-u)} = \begin{cases}
            \frac{1}{|C_s \setminus u|} \sum_{v \in C_s \setminus u} \Delta_v
                & |C_s| \ge \text{min\_stratum\_controls}
            \\
            \frac{1}{|C \setminus u|} \sum_{v \in C \setminus u} \Delta_v & \text{otherwise}
        \end{cases}

    with :math:`C` the reference (eligible control) users and :math:`C_s` those of stratum
    :math:`s`; without any reference user, :math:`\mu_s = 0`. Post-stratification on the
    week of first exposure: users exposed in the same week share its calendar drift, whatever
    their variation. A reference user is centred on the *other* reference users' mean
    (leave-one-out): centred on a mean holding their own value, their residual would shrink by
    :math:`1 - 1/|C_s|` and they would stop being exchangeable with the users they are the
    null of, which makes the empirical p-values liberal. Used on users' levels
    (:func:`user_changes`) and on their changes
    (:func:`analytics.analysis.adaptation.score_adaptation`).

    Parameters
    ----------
    change : numpy.ndarray
        Users x metrics values :math:`\Delta_u`.
    strata : numpy.ndarray
        Integer stratum of each user (:func:`exposure_strata`).
    reference : numpy.ndarray
        Boolean mask of the users whose values are the null (eligible control users); their
        values must be finite.
    min_stratum_controls : int
        Reference users a stratum needs to be centred on its own mean.

    Returns
    -------
    numpy.ndarray
        :math:`r_u` for every user (NaN where :math:`\Delta_u` is).

    References
    ----------
    Holt, D. & Smith, T. M. F. (1979). Post Stratification. *JRSS A* 142(1), 33-46.

    Checked against: the reference users' ``pandas`` ``groupby("stratum").mean()``, with the
    same fallback, subtracted by stratum, and a loop leaving each reference user out (tests).
    """
    residual = np.full_like(change, np.nan)
    total, count = change[reference].sum(axis=0), int(reference.sum())
    for stratum in np.unique(strata):
        members = strata == stratum
        controls = members & reference
        if controls.sum() >= min_stratum_controls:
            pool_sum, pool_n = change[controls].sum(axis=0), int(controls.sum())
        else:
            pool_sum, pool_n = total, count
        if pool_n == 0:
            residual[members] = change[members]
            continue
        residual[members] = change[members] - pool_sum / pool_n
        # A reference user's own value leaves the mean: sum and count of the others.
        own = members & reference
        if pool_n > 1:
            residual[own] = change[own] - (pool_sum - change[own]) / (pool_n - 1)
    return residual


def baseline_covariance(level: np.ndarray, n: np.ndarray, within: np.ndarray) -> np.ndarray:
    r"""Covariance :math:`T` of users' baselines, net of the noise of their means.

    .. math::

        T = \Pi_+\left(\widehat{\mathrm{Cov}}(\bar x_u) - W\,\overline{1/n_u}\right)

    over the reference users (their centred levels :math:`\bar x_u - \mu_{s(u)}`): the
    spread of their means minus the part sampling noise explains, the method of moments of
    DerSimonian & Laird (1986) in several dimensions. :math:`\Pi_+` sets negative
    eigenvalues to 0, the nearest positive semi-definite matrix (Higham 1988). Zeros with
    fewer than two users.

    References
    ----------
    DerSimonian, R. & Laird, N. (1986). Meta-analysis in clinical trials. *Controlled Clinical
    Trials* 7(3), 177-188.
    Higham, N. J. (1988). Computing a nearest symmetric positive semidefinite matrix. *Linear
    Algebra and its Applications* 103, 103-118.

    Checked against: the moment formula and ``numpy.linalg.eigh`` clipping by hand (tests).
    """
    k = level.shape[1]
    if len(level) < 2:
        return np.zeros((k, k))
    raw = np.cov(level, rowvar=False) - within * float(np.mean(1.0 / np.maximum(n, 1.0)))
    raw = (raw + raw.T) / 2
    values, vectors = np.linalg.eigh(raw)
    return np.asarray((vectors * np.clip(values, 0.0, None)) @ vectors.T, dtype=float)


def estimate_changes(
    curves: pd.DataFrame, level: np.ndarray, within: np.ndarray, between: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r"""Each user's change :math:`\Delta_u` along the curve and its noise covariance
    :math:`V_u`.

    With the sums of :func:`analytics.analysis.user_periods.roll_up_curves`
    (:math:`n, S_g, S_{gg}, S_x, S_{gx}`), :math:`\bar g = S_g / n` and
    :math:`S^c_{gg} = S_{gg} - S_g^2 / n`:

    .. math::

        \hat A_w = \frac{S_{gx} - \bar g S_x}{S^c_{gg}},\ C_w = \frac{W}{S^c_{gg}};\qquad
        \hat A_l = \frac{\bar x_u - \mu_{s(u)}}{\bar g},\
        C_l = \frac{T + W/n}{\bar g^2};

    .. math::

        \Delta_u = \hat A_w + C_w (C_w + C_l)^{+} (\hat A_l - \hat A_w), \qquad
        V_u = C_w - C_w (C_w + C_l)^{+} C_w,

    the inverse-covariance weighted mean of the two estimates (the Kalman update of one by
    the other; :math:`(\cdot)^+` the pseudo-inverse, so a metric that never varies gets no
    weight). Where the curve does not vary within a user (:math:`S^c_{gg} = 0`), only the
    level counts: :math:`\Delta_u = \hat A_l`, :math:`V_u = C_l`. NaN for a user without any
    interaction after exposure (:math:`\bar g = 0`).

    Parameters
    ----------
    curves : pandas.DataFrame
        Per user: ``n``, ``g_sum``, ``gg_sum``, ``{metric}__sum`` and ``{metric}__gsum``.
    level : numpy.ndarray
        Users x metrics: each user's mean :math:`\bar x_u` net of the reference users' mean
        in their stratum (:func:`centre_changes`).
    within, between : numpy.ndarray
        :math:`W` (:func:`within_user_covariance`) and :math:`T`
        (:func:`baseline_covariance`).

    Returns
    -------
    tuple of numpy.ndarray
        :math:`\Delta_u` (users x metrics) and :math:`V_u` (users x metrics x metrics).

    References
    ----------
    Efron, B. & Morris, C. (1975). Data analysis using Stein's estimator and its
    generalizations. *JASA* 70(350), 311-319.
    Graybill, F. A. & Deal, R. B. (1959). Combining unbiased estimators. *Biometrics* 15(4),
    543-550.

    Checked against: generalised least squares of the user's interactions with the baseline
    prior as one more observation, solved by ``numpy.linalg.lstsq`` (tests); the step curve
    with a huge :math:`T` gives post minus pre and :math:`k_u W`.
    """
    users, k = len(curves), len(STYLE)
    n = curves["n"].to_numpy(dtype=float)
    g_sum = curves["g_sum"].to_numpy(dtype=float)
    gg_sum = curves["gg_sum"].to_numpy(dtype=float)
    x_sum = np.column_stack([curves[f"{m}__sum"].to_numpy(dtype=float) for m in STYLE])
    gx_sum = np.column_stack([curves[f"{m}__gsum"].to_numpy(dtype=float) for m in STYLE])
    change = np.full((users, k), np.nan)
    noise = np.full((users, k, k), np.nan)
    has_post = (n > 0) & (g_sum > 0)
    g_bar = np.where(has_post, g_sum / np.where(n > 0, n, 1.0), 1.0)
    level_change = level / g_bar[:, None]
    per_user = between[None] + within[None] / np.maximum(n, 1.0)[:, None, None]
    level_noise = per_user / (g_bar**2)[:, None, None]
    spread = gg_sum - g_sum * g_bar
    sloped = has_post & (spread > 1e-9 * np.maximum(gg_sum, 1e-300))
    flat = has_post & ~sloped
    change[flat], noise[flat] = level_change[flat], level_noise[flat]
    if sloped.any():
        s = spread[sloped][:, None]
        slope = (gx_sum[sloped] - g_bar[sloped][:, None] * x_sum[sloped]) / s
        slope_noise = within[None] / s[:, :, None]
        gain = slope_noise @ np.linalg.pinv(slope_noise + level_noise[sloped], hermitian=True)
        change[sloped] = slope + np.einsum("uij,uj->ui", gain, level_change[sloped] - slope)
        noise[sloped] = slope_noise - gain @ slope_noise
    noise = (noise + noise.transpose(0, 2, 1)) / 2
    return change, noise


def user_changes(
    curves: pd.DataFrame,
    strata: np.ndarray,
    reference: np.ndarray,
    within: np.ndarray,
    min_stratum_controls: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Changes :math:`\Delta_u`, their noise :math:`V_u`, and the baseline covariance
    :math:`T` of one method's users (``curves``: one row per user, in the order of
    ``strata`` and ``reference``; rows of users without interactions are all zeros).

    The population's baseline is the reference (eligible control) users': their mean level
    in each calendar stratum (:func:`centre_changes`) and :math:`T` the spread of their
    levels (:func:`baseline_covariance`); then :func:`estimate_changes`.

    Checked against: the steps composed by hand (tests).
    """
    n = curves["n"].to_numpy(dtype=float)
    x_sum = np.column_stack([curves[f"{m}__sum"].to_numpy(dtype=float) for m in STYLE])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = x_sum / n[:, None]
    level = centre_changes(means, strata, reference, min_stratum_controls)
    between = baseline_covariance(level[reference], n[reference], within)
    change, noise = estimate_changes(curves, np.nan_to_num(level), within, between)
    return change, noise, between


def null_periods(moments: pd.DataFrame, control_users: pd.Series) -> pd.DataFrame:
    """The user-periods whose interactions carry no adaptation: every pre-period, and the
    post-periods of control users (``moments``: :func:`load_within_user`'s rows)."""
    return moments[(moments["post"] == 0) | moments["user_id"].isin(set(control_users))]


def curve_sums(
    bins: pd.DataFrame,
    user_ids: pd.Series,
    weights: Mapping[int, float],
    *,
    include_pre: bool,
    early_days: int,
) -> pd.DataFrame:
    """:func:`analytics.analysis.user_periods.roll_up_curves` in the order of ``user_ids``
    (zeros for a user without rows)."""
    rolled = roll_up_curves(bins, weights, include_pre=include_pre, early_days=early_days)
    return rolled.reindex(user_ids.to_numpy()).fillna(0.0).reset_index(drop=True)
