"""Per-user adaptation: how far each user's prompting style moved, against control's null.

For each user with enough interactions before and after first exposure, the change of their
style metrics (post-period mean minus pre-period mean) is a vector :math:`\\Delta_u`. Control
users carry the same calendar drift, so their changes are the null: :math:`\\Delta_u` is
centred on the mean change of control users first exposed in the same week,
:math:`r_u = \\Delta_u - \\mu_{s(u)}` (on all control users' mean in a week with too few of
them).

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

One function per step, in the order :func:`score_adaptation` runs them:
:func:`style_changes` and :func:`eligible_users`; :func:`exposure_strata` and
:func:`centre_changes` (:math:`r_u`); :func:`within_user_covariance` (:math:`W`);
:func:`noise_factors` (:math:`k_u`); :func:`assign_folds`, :func:`fit_direction`
(:math:`w, \\omega, \\beta`), :func:`score_fold` (:math:`s_u`) and :func:`cross_fit_scores`;
:func:`empirical_p_values`; :func:`label_users`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.analysis.user_periods import STYLE_COLUMNS, STYLE_PAIRS
from analytics.documents import LABELS
from analytics.inference.multiple import benjamini_hochberg

STYLE = list(STYLE_COLUMNS)
FOLDS = 5  # cross-fitting folds for the direction (users are assigned by a hash of their id)
MIN_CONTROLS_PER_FOLD = 10  # nobody is scored with fewer than this many eligible controls x FOLDS
RIDGE = 1e-9  # ridge added to the null covariance, relative to its trace


@dataclass(frozen=True)
class AdaptationParams:
    """Thresholds of :func:`score_adaptation`.

    Attributes
    ----------
    min_pre, min_post : int
        Interactions a user needs before and after first exposure to be scored (to be
        *eligible*); the others are ``insufficient_data`` (``new`` without any before).
    alpha : float
        Benjamini-Hochberg level, across the users of each variation, for ``adapted``.
    partial_p : float
        Unadjusted p-value at or below which a user who is not ``adapted`` is ``partial``.
    stratum_days : float
        Width of the calendar strata of first exposure within which changes are centred on
        control users' mean change.
    min_stratum_controls : int
        Eligible control users a stratum needs to be centred on its own mean; a stratum with
        fewer is centred on the mean of all eligible control users.

    Nobody is scored unless at least ``MIN_CONTROLS_PER_FOLD * FOLDS`` (10 x 5 = 50) control
    users are eligible and there is a treatment: each fold's direction and null covariance
    come from the eligible control users of the other folds, and the empirical p-values from
    all of them. Below that, every user with a pre-period is ``insufficient_data``.
    """

    min_pre: int = 3
    min_post: int = 3
    alpha: float = 0.05  # BH level for ``adapted``
    partial_p: float = 0.10  # unadjusted p below which a user not ``adapted`` is ``partial``
    stratum_days: float = 7.0  # calendar strata of first exposure for the control null
    min_stratum_controls: int = 30


@dataclass(frozen=True, eq=False)
class Direction:
    """A fitted score direction: :math:`w`, :math:`\\omega = w^\\top W w` and :math:`\\beta`
    (see :func:`fit_direction`)."""

    w: np.ndarray
    omega: float
    beta: float


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


def style_changes(users: pd.DataFrame) -> np.ndarray:
    r"""Each user's change of each style metric, :math:`\Delta_{u,m} = \bar m^{post}_u -
    \bar m^{pre}_u` (columns ``{metric}__post`` and ``{metric}__pre``), in the order of
    :data:`STYLE`; NaN where a period has no value.

    Checked against: the column differences by hand (tests).
    """
    return np.column_stack([users[f"{m}__post"] - users[f"{m}__pre"] for m in STYLE])


def eligible_users(users: pd.DataFrame, change: np.ndarray, params: AdaptationParams) -> np.ndarray:
    """Users with at least ``params.min_pre`` interactions before first exposure and
    ``params.min_post`` after, and a finite change of every style metric.

    Checked against: hand-built users on either side of the thresholds (tests).
    """
    return np.asarray(
        (users["n_pre"] >= params.min_pre).to_numpy()
        & (users["n_post"] >= params.min_post).to_numpy()
        & np.isfinite(change).all(axis=1),
        dtype=bool,
    )


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
    r"""Changes net of the calendar drift that control users of the same stratum show.

    .. math::

        r_u = \Delta_u - \mu_{s(u)}, \qquad
        \mu_s = \begin{cases}
            \frac{1}{|C_s|} \sum_{v \in C_s} \Delta_v & |C_s| \ge \text{min\_stratum\_controls}
            \\
            \frac{1}{|C|} \sum_{v \in C} \Delta_v & \text{otherwise}
        \end{cases}

    with :math:`C` the reference (eligible control) users and :math:`C_s` those of stratum
    :math:`s`; without any reference user, :math:`\mu_s = 0`. Post-stratification on the
    week of first exposure: users exposed in the same week share its calendar drift, whatever
    their variation.

    Parameters
    ----------
    change : numpy.ndarray
        Users x metrics changes :math:`\Delta_u` (:func:`style_changes`).
    strata : numpy.ndarray
        Integer stratum of each user (:func:`exposure_strata`).
    reference : numpy.ndarray
        Boolean mask of the users whose changes are the null (eligible control users); their
        changes must be finite.
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
    same fallback, subtracted by stratum (tests).
    """
    residual = np.full_like(change, np.nan)
    overall = change[reference].mean(axis=0) if reference.any() else np.zeros(change.shape[1])
    for stratum in np.unique(strata):
        members = strata == stratum
        controls = members & reference
        centre = (
            change[controls].mean(axis=0) if controls.sum() >= min_stratum_controls else overall
        )
        residual[members] = change[members] - centre
    return residual


def noise_factors(n_pre: np.ndarray, n_post: np.ndarray) -> np.ndarray:
    r"""Sampling-noise factor of each user's change, :math:`k_u = 1/n_{pre} + 1/n_{post}`
    (each count at least 1): the variance of a difference of two independent means of
    interactions with covariance :math:`W` is :math:`k_u W`.

    Checked against: the formula by hand (tests).
    """
    return np.asarray(1.0 / np.maximum(n_pre, 1) + 1.0 / np.maximum(n_post, 1), dtype=float)


def assign_folds(user_ids: pd.Series, folds: int = FOLDS) -> np.ndarray:
    """Cross-fitting fold of each user, ``hash(user_id) mod folds`` with pandas' stable
    ``hash_pandas_object``: the same user lands in the same fold on every run.

    Checked against: fold sizes of a few thousand ids (tests).
    """
    hashed = pd.util.hash_pandas_object(user_ids, index=False).to_numpy()
    return np.asarray((hashed % folds).astype(int), dtype=int)


def fit_direction(
    null: np.ndarray, treated: np.ndarray, within: np.ndarray, k_null: np.ndarray
) -> Direction:
    r"""Fisher's discriminant direction between treated and null changes, and its noise split.

    .. math::

        \Sigma = \widehat{\mathrm{Cov}}(r_{null}),\quad
        \delta = \bar r_{treated} - \bar r_{null},\quad
        w = (\Sigma + \lambda I)^{+} \delta,\quad \lambda = 10^{-9} \operatorname{tr} \Sigma,

    .. math::

        \omega = w^\top W w, \qquad
        \beta = \max\left(w^\top \Sigma w - \overline{k}_{null}\,\omega,\ 0\right)

    :math:`(\cdot)^{+}` is the Moore-Penrose pseudo-inverse and the tiny ridge keeps a
    near-singular :math:`\Sigma` stable; together they give a metric that never varies a zero
    weight instead of NaN. A NaN in :math:`\delta` (no treated user) counts as zero.
    :math:`\mathrm{Var}(w^\top r_u) = \beta + k_u \omega` splits the null spread of the score
    into a between-user part :math:`\beta` and the sampling noise :math:`k_u \omega` of a user
    with :math:`k_u = 1/n_{pre} + 1/n_{post}`; :math:`\beta` is its method-of-moments
    estimate, as the between-study variance of DerSimonian & Laird (1986).

    Parameters
    ----------
    null : numpy.ndarray
        Centred changes (users x metrics) of the reference users the direction is fitted on.
    treated : numpy.ndarray
        Centred changes of the treated users it is fitted on.
    within : numpy.ndarray
        Within-user covariance :math:`W` (:func:`within_user_covariance`).
    k_null : numpy.ndarray
        :math:`k_u` of the ``null`` users (:func:`noise_factors`).

    Returns
    -------
    Direction
        :math:`w`, :math:`\omega` and :math:`\beta`.

    References
    ----------
    Fisher, R. A. (1936). The use of multiple measurements in taxonomic problems. *Annals of
    Eugenics* 7(2), 179-188.
    Friedman, J. H. (1989). Regularized Discriminant Analysis. *JASA* 84(405), 165-175.
    DerSimonian, R. & Laird, N. (1986). Meta-analysis in clinical trials. *Controlled Clinical
    Trials* 7(3), 177-188.

    Checked against: ``numpy.linalg.solve(Sigma, delta)`` on a well-conditioned
    :math:`\Sigma`, and :math:`\omega, \beta` by their formulas (tests).
    """
    null_cov = np.cov(null, rowvar=False)
    delta = treated.mean(axis=0) - null.mean(axis=0)
    ridge = RIDGE * np.trace(null_cov) * np.eye(null.shape[1])
    # The pseudo-inverse copes with a metric that never varies.
    w = np.linalg.pinv(null_cov + ridge) @ np.nan_to_num(delta)
    omega = float(w @ within @ w)
    beta = max(float(w @ null_cov @ w) - float(k_null.mean()) * omega, 0.0)
    return Direction(w=w, omega=omega, beta=beta)


def score_fold(residual: np.ndarray, k: np.ndarray, direction: Direction) -> np.ndarray:
    r"""Standardised scores of users along a fitted direction.

    .. math::

        s_u = \frac{w^\top r_u}{\sqrt{\beta + k_u\,\omega}}

    NaN where the denominator is zero (a zero direction).

    Checked against: the formula evaluated user by user (tests).
    """
    scale = np.sqrt(direction.beta + k * direction.omega)
    return np.asarray(residual @ direction.w / np.where(scale > 0, scale, np.nan), dtype=float)


def cross_fit_directions(
    residual: np.ndarray,
    k: np.ndarray,
    within: np.ndarray,
    fold: np.ndarray,
    null: np.ndarray,
    treated: np.ndarray,
    folds: int = FOLDS,
) -> list[Direction]:
    r"""For each fold :math:`f`, the direction fitted (:func:`fit_direction`) on the null and
    treated users of the other folds only, :math:`\{u : \text{fold}(u) \ne f\}`.

    Parameters
    ----------
    residual, k : numpy.ndarray
        Centred changes and noise factors of all users.
    within : numpy.ndarray
        Within-user covariance :math:`W`.
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
            fit_direction(residual[null & rest], residual[treated & rest], within, k[null & rest])
        )
    return directions


def cross_fit_scores(
    residual: np.ndarray,
    k: np.ndarray,
    within: np.ndarray,
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
    directions = cross_fit_directions(residual, k, within, fold, null, treated, folds)
    projected = np.full(len(residual), np.nan)
    for f, direction in enumerate(directions):
        here = fold == f
        projected[here] = score_fold(residual[here], k[here], direction)
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

    ``new``: no interaction before first exposure (``n_pre == 0``);
    ``insufficient_data``: not scored (p NaN);
    ``adapted``: :math:`q \\le` ``params.alpha``;
    ``partial``: :math:`p \\le` ``params.partial_p``;
    ``unadapted``: the rest.

    Checked against: one hand-built user per rule, and the rules' precedence (tests).
    """
    label = np.where(
        q_values <= params.alpha,
        "adapted",
        np.where(p_values <= params.partial_p, "partial", "unadapted"),
    )
    label = np.where(np.isnan(p_values), "insufficient_data", label)
    return np.where(n_pre == 0, "new", label)


def score_adaptation(
    users: pd.DataFrame,
    moments: pd.DataFrame,
    control: str,
    treatments: list[str],
    params: AdaptationParams = AdaptationParams(),
) -> pd.DataFrame:
    """Scores, p-values and labels for every user of ``control`` and ``treatments``
    (``moments``: a sample of users' second moments, :func:`load_within_user`).

    The method is the module's: changes centred by stratum (:func:`centre_changes`), scored
    along a cross-fitted direction (:func:`cross_fit_scores`; control users along the first
    treatment's), empirical p-values against the eligible control users
    (:func:`empirical_p_values`), Benjamini-Hochberg per variation, labels
    (:func:`label_users`).

    Returns ``users`` with ``adaptation_score``, ``adaptation_p``, ``adaptation_q``,
    ``adaptation_label`` (NaN, and ``insufficient_data`` or ``new``, for users not scored;
    see :class:`AdaptationParams` for when nobody is).

    Checked against: seeded simulations (planted adaptation along one metric is found; under
    the null few users are ``adapted``), and the demo's golden users.csv (tests).
    """
    out = users.copy()
    change = style_changes(out)
    eligible = eligible_users(out, change, params)
    is_control = (out["variation"] == control).to_numpy()
    reference = eligible & is_control
    strata = exposure_strata(out["first_exposure"], params.stratum_days)
    residual = centre_changes(change, strata, reference, params.min_stratum_controls)
    within = within_user_covariance(moments)
    k_u = noise_factors(out["n_pre"].to_numpy(), out["n_post"].to_numpy())
    scores = np.full(len(out), np.nan)
    p_values = np.full(len(out), np.nan)
    q_values = np.full(len(out), np.nan)
    fold = assign_folds(out["user_id"])
    if reference.sum() >= MIN_CONTROLS_PER_FOLD * FOLDS and treatments:
        for variation in [control, *treatments]:
            direction_of = treatments[0] if variation == control else variation
            treated = (out["variation"] == direction_of).to_numpy() & eligible
            projected = cross_fit_scores(residual, k_u, within, fold, reference, treated)
            members = (out["variation"] == variation).to_numpy() & eligible
            null = projected[reference]
            scores[members] = projected[members]
            p_values[members] = empirical_p_values(projected[members], null, is_control[members])
            q_values[members] = benjamini_hochberg(p_values[members])
    out["adaptation_score"] = scores
    out["adaptation_p"] = p_values
    out["adaptation_q"] = q_values
    out["adaptation_label"] = label_users(p_values, q_values, out["n_pre"].to_numpy(), params)
    return out


def label_counts(scored: pd.DataFrame, variation: str | None = None) -> dict[str, int]:
    """How many users carry each label of :data:`LABELS` (of one variation, or of all)."""
    rows = scored if variation is None else scored[scored["variation"] == variation]
    counted = rows["adaptation_label"].value_counts()
    return {label: int(counted.get(label, 0)) for label in LABELS}
