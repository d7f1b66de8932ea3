"""Per-user adaptation: how far each user's prompting style moved, against control's null.

Each user's change :math:`\\Delta_u` (one entry per style metric) and its noise covariance
:math:`V_u` come from :mod:`analytics.analysis.user_changes`: the user's style regressed on
the adaptation curve (0 before exposure, :math:`1 - 2^{-t/h}` after it), with the baseline
of control users where the user's own is noisy. A user is scored by one of two methods,
which differ only in the interactions that enter :math:`\\Delta_u` and :math:`V_u`:

- ``pre_post``: users with at least ``min_pre`` interactions before first exposure and
  ``min_post`` after it; the change from before exposure to after it.
- ``learning_curve``: the others (no pre-period, or too short a one) with at least
  ``min_early`` interactions in their first ``early_days`` days on the feature and
  ``min_late`` after those; the change from their first days to their later ones, against
  control users scored the same way (control users of the same method, so of the same
  tenure: their own learning curve is the null).

Within a method, control users carry the same calendar drift, so their changes are the null:
:math:`\\Delta_u` is centred on the mean change of control users first exposed in the same
week, :math:`r_u = \\Delta_u - \\mu_{s(u)}` (on all control users' mean in a week with too
few of them). The score is covariance-aware and points where the variation moved users:
with :math:`\\Sigma` the covariance of control users' centred changes and :math:`\\delta`
the variation's mean centred change, Fisher's discriminant direction
:math:`w = \\Sigma^{-1}\\delta` and

.. math::

    s_u = \\frac{w^\\top r_u}{\\sqrt{\\beta + w^\\top V_u w}},

where :math:`\\beta = w^\\top \\Sigma w - \\overline{w^\\top V_v w}` is the part of control
users' spread that is not sampling noise (:math:`V_u = k_u W` with
:math:`k_u = 1/n_{pre} + 1/n_{post}` in the plain post-minus-pre case). The denominator makes
a light user's noisy change and a heavy user's precise one comparable. The p-value is
empirical: the share of control users of the same method (others than the user) whose score
is at least as high; the two-stage adaptive Benjamini-Hochberg procedure (Benjamini, Krieger &
Yekutieli 2006) then runs across the users of each variation (both methods in one family).
It controls the false discovery rate at the same level as Benjamini-Hochberg's, which is
conservative by the share of users who did not change: where half the treated users adapted,
plain BH holds the rate near 2.5% and misses light users it could label. Control users are
scored the same way, along the direction of the first treatment, which shows the
false-positive rate.

The direction is cross-fitted (Chernozhukov et al. 2018): users fall into five folds by a hash
of their id, and each fold is scored with the direction and null covariance estimated on the
other four, so that a user's own noise cannot pull the direction towards them.

A user who is not scored has a reason (``unscored_reason``, :func:`route_users` and
:func:`score_adaptation`): ``too_few_post``, ``too_few_pre``, ``too_few_early``,
``too_few_late``, ``no_interactions``, ``too_few_controls`` (the method has fewer than
``MIN_CONTROLS_PER_FOLD * FOLDS`` = 50 eligible control users), ``no_treatment``,
``no_style_variation`` (nothing to project: the style metrics did not vary).

One function per step, in the order :func:`score_adaptation` runs them: :func:`route_users`;
per method, :func:`analytics.analysis.user_changes.user_changes` (:math:`\\Delta_u, V_u`) and
:func:`centre_changes` (:math:`r_u`); :func:`assign_folds`, :func:`fit_direction`
(:math:`w, \\beta`), :func:`score_fold` (:math:`s_u`) and :func:`cross_fit_scores`;
:func:`empirical_p_values`; then :func:`label_users`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.analysis.params import AdaptationParams as AdaptationParams
from analytics.analysis.user_changes import STYLE as STYLE  # the metrics' order, for callers
from analytics.analysis.user_changes import (
    centre_changes,
    curve_sums,
    curve_weights,
    exposure_strata,
    null_periods,
    user_changes,
    within_user_covariance,
)
from analytics.documents import ADAPTATION_METHODS, LABELS, UNSCORED_REASONS
from analytics.inference.multiple import two_stage_benjamini_hochberg

FOLDS = 5  # cross-fitting folds for the direction (users are assigned by a hash of their id)
MIN_CONTROLS_PER_FOLD = 10  # nobody is scored with fewer than this many eligible controls x FOLDS
RIDGE = 1e-9  # ridge added to the null covariance, relative to its trace


@dataclass(frozen=True, eq=False)
class Direction:
    """A fitted score direction: :math:`w` and :math:`\\beta` (see :func:`fit_direction`)."""

    w: np.ndarray
    beta: float


def route_users(
    n_pre: np.ndarray,
    n_post: np.ndarray,
    n_early: np.ndarray,
    n_late: np.ndarray,
    params: AdaptationParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's method, as far as their own interactions allow, or why they have none.

    ``pre_post`` with at least ``min_pre`` interactions before first exposure and
    ``min_post`` after it; otherwise ``learning_curve`` with at least ``min_early`` in the
    first ``early_days`` days since exposure and ``min_late`` after them. The reason of a
    user who fits neither, the first that applies: ``too_few_post`` (enough before, too few
    after), ``no_interactions`` (none at all), ``too_few_pre`` (a pre-period too short for
    ``pre_post`` and too little for ``learning_curve``), ``too_few_early``,
    ``too_few_late``. Returns (method, reason), ``""`` where none applies.

    Checked against: one hand-built user per outcome (tests).
    """
    pre_post = (n_pre >= params.min_pre) & (n_post >= params.min_post)
    curve = (n_pre < params.min_pre) & (n_early >= params.min_early) & (n_late >= params.min_late)
    method = np.where(pre_post, "pre_post", np.where(curve, "learning_curve", ""))
    reason = np.select(
        [
            pre_post | curve,
            n_pre >= params.min_pre,
            (n_pre + n_post) == 0,
            n_pre > 0,
            n_early < params.min_early,
        ],
        ["", "too_few_post", "no_interactions", "too_few_pre", "too_few_early"],
        default="too_few_late",
    )
    return np.asarray(method, dtype=object), np.asarray(reason, dtype=object)


def assign_folds(user_ids: pd.Series, folds: int = FOLDS) -> np.ndarray:
    """Cross-fitting fold of each user, ``hash(user_id) mod folds`` with pandas' stable
    ``hash_pandas_object``: the same user lands in the same fold on every run.

    Checked against: fold sizes of a few thousand ids (tests).
    """
    hashed = pd.util.hash_pandas_object(user_ids, index=False).to_numpy()
    return np.asarray((hashed % folds).astype(int), dtype=int)


def fit_direction(null: np.ndarray, treated: np.ndarray, noise_null: np.ndarray) -> Direction:
    r"""Fisher's discriminant direction between treated and null changes, and its noise split.

    .. math::

        \Sigma = \widehat{\mathrm{Cov}}(r_{null}),\quad
        \delta = \bar r_{treated} - \bar r_{null},\quad
        w = (\Sigma + \lambda I)^{+} \delta,\quad \lambda = 10^{-9} \operatorname{tr} \Sigma,

    .. math::

        \beta = \max\left(w^\top \Sigma w - \overline{w^\top V_u w}^{\,null},\ 0\right)

    :math:`(\cdot)^{+}` is the Moore-Penrose pseudo-inverse and the tiny ridge keeps a
    near-singular :math:`\Sigma` stable; together they give a metric that never varies a zero
    weight instead of NaN. A NaN in :math:`\delta` (no treated user) counts as zero.
    :math:`\mathrm{Var}(w^\top r_u) = \beta + w^\top V_u w` splits the null spread of the
    score into a between-user part :math:`\beta` and the sampling noise :math:`w^\top V_u w`
    of a user (:math:`k_u\,w^\top W w` in the plain post-minus-pre case); :math:`\beta` is its
    method-of-moments estimate, as the between-study variance of DerSimonian & Laird (1986).

    Parameters
    ----------
    null : numpy.ndarray
        Centred changes (users x metrics) of the reference users the direction is fitted on.
    treated : numpy.ndarray
        Centred changes of the treated users it is fitted on.
    noise_null : numpy.ndarray
        Noise covariances :math:`V_u` (users x metrics x metrics) of the ``null`` users
        (:func:`analytics.analysis.user_changes.estimate_changes`).

    Returns
    -------
    Direction
        :math:`w` and :math:`\beta`.

    References
    ----------
    Fisher, R. A. (1936). The use of multiple measurements in taxonomic problems. *Annals of
    Eugenics* 7(2), 179-188.
    Friedman, J. H. (1989). Regularized Discriminant Analysis. *JASA* 84(405), 165-175.
    DerSimonian, R. & Laird, N. (1986). Meta-analysis in clinical trials. *Controlled Clinical
    Trials* 7(3), 177-188.

    Checked against: ``numpy.linalg.solve(Sigma, delta)`` on a well-conditioned
    :math:`\Sigma`, and :math:`\beta` by its formula (tests).
    """
    null_cov = np.cov(null, rowvar=False)
    delta = treated.mean(axis=0) - null.mean(axis=0) if len(treated) else np.zeros(len(null_cov))
    ridge = RIDGE * np.trace(null_cov) * np.eye(null.shape[1])
    # The pseudo-inverse copes with a metric that never varies.
    w = np.linalg.pinv(null_cov + ridge) @ np.nan_to_num(delta)
    noise = float(noise_along(noise_null, w).mean()) if len(noise_null) else 0.0
    beta = max(float(w @ null_cov @ w) - noise, 0.0)
    return Direction(w=w, beta=beta)


def noise_along(noise: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Each user's sampling variance along ``w``, :math:`w^\\top V_u w`."""
    return np.asarray(np.einsum("i,uij,j->u", w, noise, w), dtype=float)


def score_fold(residual: np.ndarray, noise: np.ndarray, direction: Direction) -> np.ndarray:
    r"""Standardised scores of users along a fitted direction.

    .. math::

        s_u = \frac{w^\top r_u}{\sqrt{\beta + w^\top V_u w}}

    NaN where the denominator is zero (a zero direction, or no noise along it).

    Checked against: the formula evaluated user by user (tests).
    """
    variance = direction.beta + noise_along(noise, direction.w)
    scale = np.sqrt(np.where(variance > 0, variance, np.nan))
    return np.asarray(residual @ direction.w / scale, dtype=float)


def cross_fit_directions(
    residual: np.ndarray,
    noise: np.ndarray,
    fold: np.ndarray,
    null: np.ndarray,
    treated: np.ndarray,
    folds: int = FOLDS,
) -> list[Direction]:
    r"""For each fold :math:`f`, the direction fitted (:func:`fit_direction`) on the null and
    treated users of the other folds only, :math:`\{u : \text{fold}(u) \ne f\}`.

    Parameters
    ----------
    residual, noise : numpy.ndarray
        Centred changes (users x metrics) and noise covariances :math:`V_u` of all users.
    fold : numpy.ndarray
        Fold of each user (:func:`assign_folds`).
    null, treated : numpy.ndarray
        Boolean masks of the reference users and of the treated users the direction points to.
    folds : int
        Number of folds.

    References
    ----------
    Chernozhukov, V., Chetverikov, D., Demirer, M., Duflo, E., Hansen, C., Newey, W. & Robins,
    J. (2018). Double/debiased machine learning for treatment and structural parameters. *The
    Econometrics Journal* 21(1), C1-C68, section 3 (cross-fitting).

    Checked against: changing the users of fold :math:`f` leaves fold :math:`f`'s direction
    bit for bit the same and changes the others' (tests).
    """
    directions = []
    for f in range(folds):
        # Cross-fitting: the direction is estimated without the scored users, or it would
        # bend towards their own noise and make them look adapted.
        rest = fold != f
        directions.append(
            fit_direction(residual[null & rest], residual[treated & rest], noise[null & rest])
        )
    return directions


def cross_fit_scores(
    residual: np.ndarray,
    noise: np.ndarray,
    fold: np.ndarray,
    null: np.ndarray,
    treated: np.ndarray,
    folds: int = FOLDS,
) -> np.ndarray:
    r"""Every user's score :math:`s_u` (:func:`score_fold`) along the direction of
    :func:`cross_fit_directions` for their fold, fitted without the users of that fold.

    Parameters are those of :func:`cross_fit_directions`; the result has one score per user
    (NaN where :math:`r_u` is).

    Checked against: fold by fold, :func:`score_fold` with a direction fitted on the other
    folds' users (tests).
    """
    directions = cross_fit_directions(residual, noise, fold, null, treated, folds)
    projected = np.full(len(residual), np.nan)
    for f, direction in enumerate(directions):
        here = fold == f
        projected[here] = score_fold(residual[here], noise[here], direction)
    return projected


def empirical_p_values(
    scores: np.ndarray, null: np.ndarray, is_null_member: np.ndarray
) -> np.ndarray:
    r"""One-sided empirical p-values of ``scores`` against the ``null`` sample.

    .. math::

        p_u = \frac{1 + \#\{v \in N,\ v \ne u : s_v \ge s_u\}}{1 + |N \setminus \{u\}|}

    A member of the null sample is compared with the others only (its own score, always
    :math:`\ge` itself, is left out once); ties count as at least as high. The +1 in
    numerator and denominator makes the p-value exact-valid (never zero) when the scores
    are exchangeable with the null.

    Parameters
    ----------
    scores : numpy.ndarray
        Scores to test.
    null : numpy.ndarray
        Scores of the null sample (control users).
    is_null_member : numpy.ndarray
        Boolean per score: whether that score is itself one of ``null``.

    Returns
    -------
    numpy.ndarray
        p-values in (0, 1], in the order of ``scores``.

    References
    ----------
    Davison, A. C. & Hinkley, D. V. (1997). *Bootstrap Methods and their Application*,
    chapter 4 (Monte Carlo p-values).
    Phipson, B. & Smyth, G. K. (2010). Permutation P-values Should Never Be Zero.
    *Statistical Applications in Genetics and Molecular Biology* 9(1), article 39.

    Checked against: a brute-force loop over the null sample, with ties and null members
    (tests).
    """
    ordered = np.sort(null)
    at_least = len(ordered) - np.searchsorted(ordered, scores, side="left")
    at_least = at_least - is_null_member.astype(int)
    size = len(ordered) - is_null_member.astype(int)
    return np.asarray((1.0 + at_least) / (1.0 + size), dtype=float)


def label_users(
    p_values: np.ndarray, q_values: np.ndarray, n_pre: np.ndarray, params: AdaptationParams
) -> np.ndarray:
    """Each user's label, the first that applies of:

    ``new``: not scored (p NaN) and no interaction before first exposure (``n_pre == 0``);
    ``insufficient_data``: not scored;
    ``adapted``: :math:`q \\le` ``params.alpha``;
    ``partial``: :math:`p \\le` ``params.partial_p``;
    ``unadapted``: the rest.

    A user without a pre-period whom ``learning_curve`` scored gets a label of the evidence
    like anybody else: ``new`` means no pre-period and nothing to score yet.

    Checked against: one hand-built user per rule, and the rules' precedence (tests).
    """
    label = np.where(
        q_values <= params.alpha,
        "adapted",
        np.where(p_values <= params.partial_p, "partial", "unadapted"),
    )
    unscored = np.where(n_pre == 0, "new", "insufficient_data")
    return np.asarray(np.where(np.isnan(p_values), unscored, label), dtype=object)


def score_method(
    curves: pd.DataFrame,
    variation: np.ndarray,
    control: str,
    treatments: list[str],
    strata: np.ndarray,
    fold: np.ndarray,
    within: np.ndarray,
    params: AdaptationParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One method's scores, p-values and reasons for its users (one row each, in order).

    Changes and their noise (:func:`analytics.analysis.user_changes.user_changes`), centred
    by stratum (:func:`centre_changes`), scored along the cross-fitted direction of their
    variation (control users along the first treatment's; :func:`cross_fit_scores`), and
    empirical p-values (:func:`empirical_p_values`) against the method's control users
    along the same direction. Reasons: ``no_treatment``, ``too_few_controls`` (fewer than
    ``MIN_CONTROLS_PER_FOLD * FOLDS`` control users), ``no_style_variation`` (no finite
    score); ``""`` for a scored user.

    Checked against: :func:`score_adaptation`'s seeded simulations (tests).
    """
    size = len(curves)
    scores, p_values = np.full(size, np.nan), np.full(size, np.nan)
    reason = np.full(size, "", dtype=object)
    is_control = variation == control
    if not treatments:
        reason[:] = "no_treatment"
        return scores, p_values, reason
    if is_control.sum() < MIN_CONTROLS_PER_FOLD * FOLDS:
        reason[:] = "too_few_controls"
        return scores, p_values, reason
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        change, noise, _ = user_changes(
            curves, strata, is_control, within, params.min_stratum_controls
        )
        finite = np.isfinite(change).all(axis=1) & np.isfinite(noise).all(axis=(1, 2))
        reference = is_control & finite
        if reference.sum() < MIN_CONTROLS_PER_FOLD * FOLDS:
            reason[:] = "too_few_controls"
            return scores, p_values, reason
        change[~finite] = np.nan
        residual = centre_changes(change, strata, reference, params.min_stratum_controls)
        for name in [control, *treatments]:
            direction_of = treatments[0] if name == control else name
            treated = (variation == direction_of) & finite
            projected = cross_fit_scores(residual, noise, fold, reference, treated)
            null = projected[reference & np.isfinite(projected)]
            members = (variation == name) & np.isfinite(projected)
            if len(null) < 2:
                continue
            scores[members] = projected[members]
            p_values[members] = empirical_p_values(projected[members], null, is_control[members])
    reason[np.isnan(p_values)] = "no_style_variation"
    return scores, p_values, reason


def score_adaptation(
    users: pd.DataFrame,
    moments: pd.DataFrame,
    bins: pd.DataFrame,
    control: str,
    treatments: list[str],
    params: AdaptationParams = AdaptationParams(),
    half_life_days: float | None = None,
) -> pd.DataFrame:
    """Scores, p-values, labels and methods for every user of ``control`` and ``treatments``.

    ``users``: one row per user (``user_id``, ``variation``, ``first_exposure``, ``n_pre``,
    ``n_post``); ``moments``: a sample of users' second moments
    (:func:`analytics.analysis.user_periods.load_within_user`); ``bins``: every user's sums
    per bin of days since exposure (:func:`analytics.analysis.user_periods.load_user_bins`);
    ``half_life_days``: the experiment's fitted adaptation half-life, the curve's shape
    (None: ``params.fallback_half_life_days``).

    Users are routed to a method (:func:`route_users`), each method scores its users
    (:func:`score_method`), the two-stage Benjamini-Hochberg procedure runs at ``params.alpha``
    across the scored users of each variation (both methods in one family), and
    :func:`label_users` labels them. The within-user covariance :math:`W` comes from the
    periods that carry no adaptation: pre-periods and control users' post-periods
    (:func:`analytics.analysis.user_changes.null_periods`).

    Returns ``users`` with ``adaptation_score``, ``adaptation_p``, ``adaptation_q``,
    ``adaptation_label``, ``adaptation_method`` (``pre_post``, ``learning_curve``, or ``""``
    when not scored) and ``unscored_reason`` (``""`` when scored; see
    :data:`analytics.documents.UNSCORED_REASONS`).

    Checked against: seeded simulations (planted adaptation is found for returning and new
    users; under the null few users are ``adapted`` and p-values are uniform), and the
    demo's golden users.csv (tests).
    """
    out = users.copy()
    variation = out["variation"].astype(str).to_numpy()
    is_control = variation == control
    half_life = half_life_days if half_life_days and half_life_days > 0 else None
    weights = curve_weights(half_life or params.fallback_half_life_days)
    within = within_user_covariance(null_periods(moments, out.loc[is_control, "user_id"]))
    strata = exposure_strata(out["first_exposure"], params.stratum_days)
    fold = assign_folds(out["user_id"])
    post = curve_sums(
        bins, out["user_id"], weights, include_pre=False, early_days=params.early_days
    )
    method, reason = route_users(
        out["n_pre"].to_numpy(),
        out["n_post"].to_numpy(),
        post["n_early"].to_numpy(),
        post["n_late"].to_numpy(),
        params,
    )
    scores, p_values = np.full(len(out), np.nan), np.full(len(out), np.nan)
    for name in ADAPTATION_METHODS:
        index = np.flatnonzero(method == name)
        if not len(index):
            continue
        curves = post
        if name == "pre_post":
            curves = curve_sums(
                bins, out["user_id"], weights, include_pre=True, early_days=params.early_days
            )
        scores[index], p_values[index], reason[index] = score_method(
            curves.iloc[index],
            variation[index],
            control,
            treatments,
            strata[index],
            fold[index],
            within,
            params,
        )
    q_values = np.full(len(out), np.nan)
    for name in np.unique(variation):
        scored = (variation == name) & ~np.isnan(p_values)
        q_values[scored] = two_stage_benjamini_hochberg(p_values[scored], params.alpha)
    out["adaptation_score"] = scores
    out["adaptation_p"] = p_values
    out["adaptation_q"] = q_values
    out["adaptation_label"] = label_users(p_values, q_values, out["n_pre"].to_numpy(), params)
    out["adaptation_method"] = np.where(np.isnan(p_values), "", method)
    out["unscored_reason"] = np.where(np.isnan(p_values), reason, "")
    return out


def label_counts(scored: pd.DataFrame, variation: str | None = None) -> dict[str, int]:
    """How many users carry each label of :data:`LABELS` (of one variation, or of all)."""
    rows = scored if variation is None else scored[scored["variation"] == variation]
    counted = rows["adaptation_label"].value_counts()
    return {label: int(counted.get(label, 0)) for label in LABELS}


def unscored_counts(scored: pd.DataFrame, variation: str | None = None) -> dict[str, int]:
    """How many users were not scored for each reason of :data:`UNSCORED_REASONS` (of one
    variation, or of all)."""
    rows = scored if variation is None else scored[scored["variation"] == variation]
    counted = rows["unscored_reason"].value_counts()
    return {reason: int(counted.get(reason, 0)) for reason in UNSCORED_REASONS}


def method_counts(scored: pd.DataFrame, variation: str | None = None) -> dict[str, int]:
    """How many users each method of :data:`ADAPTATION_METHODS` scored (of one variation, or
    of all)."""
    rows = scored if variation is None else scored[scored["variation"] == variation]
    counted = rows["adaptation_method"].value_counts()
    return {method: int(counted.get(method, 0)) for method in ADAPTATION_METHODS}
