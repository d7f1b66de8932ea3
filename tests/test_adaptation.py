"""Tests of analytics.analysis.adaptation and analytics.analysis.user_changes, step by step,
against independent implementations.

Each step of the score is compared with a second way of computing it: numpy's ``cov`` on raw
interactions (within-user covariance), sums over raw interactions (the curve sums),
generalised least squares solved by ``numpy.linalg.lstsq`` (a user's change and its noise), a
pandas groupby and a leave-one-out loop (centring), ``numpy.linalg.solve`` (the direction), a
brute-force loop (empirical p-values). Then seeded simulations check the whole score:
planted adaptation is found for returning users and for new ones (by their learning curve),
under the null few users are ``adapted``, and every user who is not scored says why; the
slow tests do the same on the demo data. Every random number is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from analytics.analysis.adaptation import (
    FOLDS,
    LABELS,
    MIN_CONTROLS_PER_FOLD,
    RIDGE,
    AdaptationParams,
    Direction,
    assign_folds,
    cross_fit_directions,
    cross_fit_scores,
    empirical_p_values,
    fit_direction,
    label_counts,
    label_users,
    method_counts,
    route_users,
    score_adaptation,
    score_fold,
    unscored_counts,
)
from analytics.analysis.user_changes import (
    STYLE,
    baseline_covariance,
    centre_changes,
    curve_sums,
    curve_weights,
    estimate_changes,
    exposure_strata,
    null_periods,
    within_user_covariance,
)
from analytics.analysis.user_periods import STYLE_PAIRS
from analytics.documents import ADAPTATION_METHODS, UNSCORED_REASONS
from analytics.features.metrics import DAY_BINS

K = len(STYLE)
START = pd.Timestamp("2026-10-19", tz="UTC")
RATES = [m for m in STYLE if m != "prompt_length"]


# --- Simulated experiments -------------------------------------------------------------


def simulate_interactions(
    rng: np.random.Generator,
    variations: np.ndarray,
    adaptive: np.ndarray,
    shift: float,
    n_range: tuple[int, int] = (6, 30),
    new: np.ndarray | None = None,
    half_life: float = 2.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw interactions of each user before and after first exposure: prompt length around
    the user's own mean, 0/1 style indicators at the user's own rates, everybody's prompts a
    little longer for each day exposure came later (calendar drift) and a little longer on
    their first days after it (a learning curve of their own, the same in every variation),
    and ``shift`` added to the hedging rate of ``adaptive`` users after exposure, along
    ``1 - 2^(-t / half_life)`` in days ``t`` since first exposure. ``new`` users have no
    interaction before exposure. Returns (interactions, users); interactions have ``user``,
    ``post``, ``day`` (days since exposure, -1 before it) and the style metrics."""
    n_users = len(variations)
    new = np.zeros(n_users, dtype=bool) if new is None else new
    exposure_day = rng.uniform(0, 21, n_users)
    users = pd.DataFrame(
        {
            "user_id": [f"user-{i:05d}" for i in range(n_users)],
            "variation": variations,
            "first_exposure": START + pd.to_timedelta(exposure_day, unit="D"),
            "n_pre": np.where(new, 0, rng.integers(*n_range, n_users)),
            "n_post": rng.integers(*n_range, n_users),
        }
    )
    base_length = rng.normal(30.0, 6.0, n_users)
    base_rate = rng.uniform(0.1, 0.5, (n_users, len(RATES)))
    frames = []
    for post, counts in ((0, users["n_pre"].to_numpy()), (1, users["n_post"].to_numpy())):
        who = np.repeat(np.arange(n_users), counts)
        # Days since exposure: anywhere in the rest of a 28-day experiment after it.
        days = rng.uniform(0, 28 - exposure_day[who]) if post else np.full(len(who), -1.0)
        rates = base_rate[who].copy()
        if post:
            curve = 1 - 2.0 ** (-days / half_life)
            rates[:, RATES.index("hedge_rate")] += shift * adaptive[who] * curve
        frame = pd.DataFrame(
            rng.random((len(who), len(RATES))) < np.clip(rates, 0, 1), columns=RATES
        ).astype(float)
        learning = post * 3.0 * np.exp(-np.maximum(days, 0) / 2)  # everybody's first days
        frame["prompt_length"] = (
            base_length[who]
            + post * 0.3 * exposure_day[who]
            + learning
            + rng.normal(0, 8.0, len(who))
        )
        frame["user"], frame["post"], frame["day"] = who, post, np.floor(days).astype(int)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), users


def user_bins(interactions: pd.DataFrame) -> pd.DataFrame:
    """Per user and bin of days since exposure, ``n`` and each style metric's ``__sum``, as
    ``load_user_bins`` returns them."""
    starts = np.array(DAY_BINS)
    day = interactions["day"].to_numpy()
    bins = np.where(day < 0, -1, starts[np.searchsorted(starts, day, side="right") - 1])
    frame = interactions[STYLE].add_suffix("__sum")
    frame["n"] = 1.0
    frame["user_id"] = interactions["user"].map(lambda i: f"user-{i:05d}")
    frame["bin"] = bins
    return frame.groupby(["user_id", "bin"], as_index=False).sum()


def second_moments(interactions: pd.DataFrame) -> pd.DataFrame:
    """Per user-period n, sums, sums of squares and cross-products, as ``load_within_user``
    returns them (pairs named in the order of ``STYLE_PAIRS``)."""
    values = interactions[STYLE].copy()
    for metric in STYLE:
        values[f"{metric}__sum"] = interactions[metric]
        values[f"{metric}__sumsq"] = interactions[metric] ** 2
    for a, b in STYLE_PAIRS:
        values[f"{a}__x__{b}"] = interactions[a] * interactions[b]
    values = values.drop(columns=STYLE)
    values["n"] = 1.0
    values["user_id"] = interactions["user"].map(lambda i: f"user-{i:05d}")
    values["post"] = interactions["post"]
    return values.groupby(["user_id", "post"], as_index=False).sum()


@dataclass(frozen=True)
class Experiment:
    """A simulated experiment as :func:`score_adaptation` reads it, and its ground truth."""

    users: pd.DataFrame
    moments: pd.DataFrame
    bins: pd.DataFrame
    adaptive: np.ndarray
    new: np.ndarray

    def score(self, treatments: tuple[str, ...] = ("1",), **kwargs: Any) -> pd.DataFrame:
        return score_adaptation(
            self.users, self.moments, self.bins, "0", list(treatments), **kwargs
        )


def simulate(
    seed: int,
    n_control: int = 200,
    n_treated: int = 200,
    shift: float = 0.0,
    adaptive_share: float = 0.5,
    new_share: float = 0.0,
    n_range: tuple[int, int] = (6, 30),
) -> Experiment:
    """A seeded experiment with variations "0" and "1"."""
    rng = np.random.default_rng(seed)
    variations = np.array(["0"] * n_control + ["1"] * n_treated)
    adaptive = (variations == "1") & (rng.random(len(variations)) < adaptive_share)
    new = rng.random(len(variations)) < new_share
    interactions, users = simulate_interactions(rng, variations, adaptive, shift, n_range, new)
    return Experiment(users, second_moments(interactions), user_bins(interactions), adaptive, new)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    return float(mannwhitneyu(positive, negative).statistic / (len(positive) * len(negative)))


# --- Within-user covariance ------------------------------------------------------------


def test_within_user_covariance_matches_pooled_numpy_cov() -> None:
    rng = np.random.default_rng(11)
    variations = np.array(["0"] * 40)
    interactions, _ = simulate_interactions(
        rng, variations, np.zeros(40, dtype=bool), 0.0, n_range=(1, 12)
    )
    # Pooled over user-periods: sum of (n - 1) * cov(ddof=1) over sum of (n - 1).
    scatter = np.zeros((K, K))
    degrees = 0
    for _, group in interactions.groupby(["user", "post"]):
        if len(group) >= 2:
            scatter += (len(group) - 1) * np.cov(group[STYLE].to_numpy(), rowvar=False, ddof=1)
            degrees += len(group) - 1
    moments = second_moments(interactions)
    assert (moments["n"] == 1).any()  # single-interaction periods are there, and ignored
    np.testing.assert_allclose(within_user_covariance(moments), scatter / degrees, rtol=1e-9)


def test_within_user_covariance_without_repeated_interactions_is_zero() -> None:
    rng = np.random.default_rng(12)
    interactions, _ = simulate_interactions(
        rng, np.array(["0"] * 5), np.zeros(5, dtype=bool), 0.0, n_range=(1, 2)
    )
    assert np.array_equal(within_user_covariance(second_moments(interactions)), np.zeros((K, K)))


def test_null_periods_are_pre_periods_and_control_post_periods() -> None:
    moments = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "post": [0, 1, 0, 1, 1]})
    kept = null_periods(moments, pd.Series(["b"]))
    assert kept[["user_id", "post"]].values.tolist() == [["a", 0], ["b", 0], ["b", 1]]


# --- The adaptation curve and its sums --------------------------------------------------


def test_curve_weights_follow_the_half_life_at_each_bins_middle() -> None:
    weights = curve_weights(2.0)
    assert weights[-1] == 0.0
    assert weights[0] == pytest.approx(1 - 2 ** (-0.5 / 2.0))  # day 0: middle 0.5
    assert weights[7] == pytest.approx(1 - 2 ** (-8.5 / 2.0))  # days 7-9: middle 8.5
    assert weights[21] == pytest.approx(1 - 2 ** (-24.5 / 2.0))  # 21+: a week after its start
    assert set(weights) == {-1, *DAY_BINS}
    assert curve_weights(None) == {-1: 0.0, **dict.fromkeys(DAY_BINS, 1.0)}


def test_curve_sums_match_sums_over_raw_interactions() -> None:
    rng = np.random.default_rng(13)
    interactions, users = simulate_interactions(
        rng, np.array(["0"] * 30), np.zeros(30, dtype=bool), 0.0, n_range=(0, 9)
    )
    weights = curve_weights(3.0)
    for include_pre in (True, False):
        sums = curve_sums(
            user_bins(interactions),
            users["user_id"],
            weights,
            include_pre=include_pre,
            early_days=3,
        )
        for i in range(30):
            rows = interactions[(interactions["user"] == i)]
            if not include_pre:
                rows = rows[rows["post"] == 1]
            day = rows["day"].to_numpy()
            g = np.array(
                [weights[-1 if d < 0 else max(b for b in DAY_BINS if b <= d)] for d in day]
            )
            expected = {
                "n": len(rows),
                "n_early": ((day >= 0) & (day < 3)).sum(),
                "n_late": (day >= 3).sum(),
                "g_sum": g.sum(),
                "gg_sum": (g**2).sum(),
                "hedge_rate__sum": rows["hedge_rate"].sum(),
                "prompt_length__gsum": (g * rows["prompt_length"]).sum(),
            }
            for column, value in expected.items():
                assert sums.loc[i, column] == pytest.approx(value, abs=1e-9), (i, column)


# --- Changes and their noise -------------------------------------------------------------


def one_user_curves(x: np.ndarray, g: np.ndarray) -> pd.DataFrame:
    """The curve sums of one user's interactions ``x`` (interactions x metrics) at curve
    values ``g``."""
    row = {"n": len(x), "g_sum": g.sum(), "gg_sum": (g**2).sum()}
    for j, metric in enumerate(STYLE):
        row[f"{metric}__sum"] = x[:, j].sum()
        row[f"{metric}__gsum"] = (g * x[:, j]).sum()
    return pd.DataFrame([row])


def gls_change(
    x: np.ndarray, g: np.ndarray, m: np.ndarray, within: np.ndarray, between: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised least squares of (b, A) on x_i = b + g_i A + e_i and the prior m = b + eta,
    every block whitened by its Cholesky factor, solved by ``numpy.linalg.lstsq``."""
    eye = np.eye(K)
    rows = [np.hstack([eye, gi * eye]) for gi in g] + [np.hstack([eye, 0 * eye])]
    targets = [*x, m]
    white_w = np.linalg.inv(np.linalg.cholesky(within))
    white_t = np.linalg.inv(np.linalg.cholesky(between))
    design = np.vstack([white_w @ r for r in rows[:-1]] + [white_t @ rows[-1]])
    target = np.concatenate([white_w @ t for t in targets[:-1]] + [white_t @ targets[-1]])
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    covariance = np.linalg.inv(design.T @ design)
    return solution[K:], covariance[K:, K:]


def test_a_change_is_the_gls_estimate_with_the_population_baseline_as_a_prior() -> None:
    rng = np.random.default_rng(14)
    within = random_covariance(rng, 0.5)
    between = random_covariance(rng, 0.3)
    for n_pre, n_post in ((0, 7), (3, 5), (12, 30)):
        g = np.r_[np.zeros(n_pre), rng.uniform(0.1, 1.0, n_post)]
        x = rng.normal(0, 1, (n_pre + n_post, K)) + np.outer(g, np.linspace(-1, 1, K))
        m = rng.normal(0, 0.2, K)
        change, noise = estimate_changes(
            one_user_curves(x, g), (x.mean(axis=0) - m)[None], within, between
        )
        expected, covariance = gls_change(x, g, m, within, between)
        np.testing.assert_allclose(change[0], expected, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(noise[0], covariance, rtol=1e-7, atol=1e-9)


def test_with_the_step_curve_and_baselines_far_apart_a_change_is_post_minus_pre() -> None:
    # The plain change of the method before the curve: post mean - pre mean, noise k_u W.
    rng = np.random.default_rng(15)
    within = random_covariance(rng)
    n_pre, n_post = 4, 9
    x = rng.normal(0, 1, (n_pre + n_post, K))
    g = np.r_[np.zeros(n_pre), np.ones(n_post)]
    change, noise = estimate_changes(
        one_user_curves(x, g), rng.normal(0, 1, (1, K)), within, 1e9 * np.eye(K)
    )
    np.testing.assert_allclose(change[0], x[n_pre:].mean(axis=0) - x[:n_pre].mean(axis=0))
    np.testing.assert_allclose(noise[0], (1 / n_pre + 1 / n_post) * within, rtol=1e-6)


def test_when_everybody_starts_alike_the_change_is_measured_from_the_population() -> None:
    # T = 0: the user's own pre-period adds nothing; their level against m is the estimate.
    rng = np.random.default_rng(16)
    within = random_covariance(rng)
    g = np.r_[np.zeros(3), rng.uniform(0.2, 1, 6)]
    x = rng.normal(0, 1, (9, K))
    m = rng.normal(0, 1, K)
    change, noise = estimate_changes(
        one_user_curves(x, g), (x.mean(axis=0) - m)[None], within, np.zeros((K, K))
    )
    expected = (g[:, None] * (x - m)).sum(axis=0) / (g**2).sum()
    np.testing.assert_allclose(change[0], expected, rtol=1e-9)
    np.testing.assert_allclose(noise[0], within / (g**2).sum(), rtol=1e-9)


def test_a_flat_curve_uses_the_level_and_no_post_period_gives_nan() -> None:
    within, between = np.eye(K), 0.5 * np.eye(K)
    x = np.ones((4, K))
    flat = one_user_curves(x, np.full(4, 0.5))
    change, noise = estimate_changes(flat, np.full((1, K), 0.2), within, between)
    np.testing.assert_allclose(change[0], 0.2 / 0.5)
    np.testing.assert_allclose(noise[0], (between + within / 4) / 0.25)
    change, noise = estimate_changes(
        one_user_curves(x, np.zeros(4)), np.zeros((1, K)), within, between
    )
    assert np.isnan(change).all() and np.isnan(noise).all()


def test_baseline_covariance_is_the_spread_of_levels_net_of_noise_and_never_negative() -> None:
    rng = np.random.default_rng(17)
    within = random_covariance(rng)
    level = rng.multivariate_normal(np.zeros(K), 0.2 * np.eye(K), 500)
    n = rng.integers(2, 20, 500)
    raw = np.cov(level, rowvar=False) - within * np.mean(1 / n)
    values, vectors = np.linalg.eigh(raw)
    expected = vectors @ np.diag(np.clip(values, 0, None)) @ vectors.T
    between = baseline_covariance(level, n, within)
    np.testing.assert_allclose(between, expected, atol=1e-12)
    assert np.linalg.eigvalsh(between).min() >= -1e-12
    assert (values < 0).any()  # the clipping did something here
    assert np.array_equal(baseline_covariance(level[:1], n[:1], within), np.zeros((K, K)))


# --- Routing, strata, folds --------------------------------------------------------------


def test_each_user_is_routed_to_a_method_or_given_a_reason() -> None:
    params = AdaptationParams(min_pre=3, min_post=3, min_early=2, min_late=3)
    cases = {
        # (n_pre, n_post, n_early, n_late): (method, reason)
        (3, 3, 0, 3): ("pre_post", ""),
        (3, 2, 1, 1): ("", "too_few_post"),
        (0, 0, 0, 0): ("", "no_interactions"),
        (0, 5, 2, 3): ("learning_curve", ""),
        (2, 5, 2, 3): ("learning_curve", ""),  # a pre-period too short for pre_post
        (2, 5, 1, 4): ("", "too_few_pre"),
        (0, 5, 1, 4): ("", "too_few_early"),
        (0, 5, 3, 2): ("", "too_few_late"),
    }
    counts = np.array(list(cases), dtype=int)
    method, reason = route_users(*counts.T, params)
    assert list(zip(method, reason, strict=True)) == list(cases.values())


def test_exposure_strata_count_whole_periods_from_the_first_exposure() -> None:
    first = pd.Series(START + pd.to_timedelta([3.0, 0.0, 6.99, 7.0, 15.5, 13.9], unit="D"))
    assert exposure_strata(first, 7.0).tolist() == [0, 0, 0, 1, 2, 1]
    assert exposure_strata(first, 2.0).tolist() == [1, 0, 3, 3, 7, 6]


def test_early_days_must_end_a_bin() -> None:
    with pytest.raises(ValueError, match="early_days must be one of 1, 2, 3"):
        AdaptationParams(early_days=8)


def test_folds_are_stable_and_balanced() -> None:
    ids = pd.Series([f"user-{i}" for i in range(5000)])
    fold = assign_folds(ids)
    assert np.array_equal(fold, assign_folds(ids.copy()))
    assert set(fold.tolist()) == set(range(FOLDS))
    counts = np.bincount(fold, minlength=FOLDS)
    assert (np.abs(counts - 1000) < 4 * np.sqrt(1000 * 0.8)).all(), counts
    # A user's fold does not depend on who else is there.
    assert np.array_equal(assign_folds(ids[::7]), fold[::7])


# --- Centring --------------------------------------------------------------------------


def loop_centre(
    change: np.ndarray, strata: np.ndarray, reference: np.ndarray, minimum: int
) -> np.ndarray:
    """One user at a time: the mean of the other reference users of their stratum (of all
    reference users when the stratum has too few)."""
    out = np.empty_like(change)
    for u in range(len(change)):
        in_stratum = reference & (strata == strata[u])
        pool = in_stratum if in_stratum.sum() >= minimum else reference.copy()
        pool[u] = False
        out[u] = change[u] - change[pool].mean(axis=0)
    return out


def groupby_centre(
    change: np.ndarray, strata: np.ndarray, reference: np.ndarray, minimum: int
) -> np.ndarray:
    frame = pd.DataFrame(change, columns=STYLE)
    frame["stratum"] = strata
    controls = frame[reference]
    by_stratum = controls.groupby("stratum")
    means = by_stratum[STYLE].mean()[by_stratum.size() >= minimum]
    centre = means.reindex(strata).fillna(controls[STYLE].mean())
    return np.asarray(change - centre.to_numpy())


def test_centring_matches_a_pandas_groupby_and_leaves_reference_users_out() -> None:
    rng = np.random.default_rng(21)
    n = 600
    strata = rng.integers(0, 5, n)
    change = rng.normal(0, 1, (n, K)) + strata[:, None] * np.arange(K)  # drift by stratum
    reference = rng.random(n) < 0.4
    reference[(strata == 4) & reference] = rng.random(((strata == 4) & reference).sum()) < 0.1
    minimum = 30
    sizes = np.bincount(strata[reference])
    assert sizes.min() < minimum <= np.sort(sizes)[1]  # one stratum falls back, others do not
    residual = centre_changes(change, strata, reference, minimum)
    # Users who are not reference users: centred on the plain stratum means.
    np.testing.assert_allclose(
        residual[~reference],
        groupby_centre(change, strata, reference, minimum)[~reference],
        rtol=1e-12,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        residual, loop_centre(change, strata, reference, minimum), rtol=1e-10, atol=1e-10
    )


def test_a_stratum_with_too_few_controls_is_centred_on_the_overall_control_mean() -> None:
    rng = np.random.default_rng(22)
    change = rng.normal(0, 1, (100, K))
    strata = np.repeat([0, 1, 2], [60, 30, 10])
    reference = np.zeros(100, dtype=bool)
    reference[:40] = True  # stratum 0: 40 controls
    reference[60:79] = True  # stratum 1: 19 controls, one short
    # stratum 2: no control at all
    residual = centre_changes(change, strata, reference, min_stratum_controls=20)
    overall = change[reference].mean(axis=0)
    np.testing.assert_allclose(residual[40:60], change[40:60] - change[:40].mean(axis=0))
    np.testing.assert_allclose(residual[79:], change[79:] - overall)
    reference[79] = True  # now 20: stratum 1 gets its own mean
    residual = centre_changes(change, strata, reference, min_stratum_controls=20)
    np.testing.assert_allclose(residual[80:90], change[80:90] - change[60:80].mean(axis=0))


def test_centring_without_controls_leaves_changes_as_they_are() -> None:
    change = np.random.default_rng(23).normal(0, 1, (20, K))
    residual = centre_changes(change, np.zeros(20, dtype=int), np.zeros(20, dtype=bool), 30)
    np.testing.assert_array_equal(residual, change)


# --- Direction and scores --------------------------------------------------------------


def random_covariance(rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    factor = rng.normal(0, scale, (K, K))
    return np.asarray(factor @ factor.T + scale**2 * np.eye(K))


def noise_of(k: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Noise covariances k_u W, the plain change's."""
    return np.asarray(k[:, None, None] * within[None])


def test_direction_solves_the_fisher_equations_when_sigma_is_well_conditioned() -> None:
    rng = np.random.default_rng(31)
    null = rng.multivariate_normal(np.zeros(K), random_covariance(rng), 400)
    treated = rng.multivariate_normal(np.linspace(-1, 1, K), random_covariance(rng), 300)
    within = random_covariance(rng, 3.0)
    k_null = rng.uniform(0.05, 0.5, 400)
    sigma = np.cov(null, rowvar=False)
    assert np.linalg.cond(sigma) < 1e3
    direction = fit_direction(null, treated, noise_of(k_null, within))
    expected = np.linalg.solve(sigma, treated.mean(axis=0) - null.mean(axis=0))
    np.testing.assert_allclose(direction.w, expected, rtol=1e-6)
    # The ridge is RIDGE times the trace: exactly that system, to rounding.
    ridged = sigma + RIDGE * np.trace(sigma) * np.eye(K)
    np.testing.assert_allclose(
        direction.w, np.linalg.solve(ridged, treated.mean(axis=0) - null.mean(axis=0)), rtol=1e-11
    )
    noise = np.mean([k * expected @ within @ expected for k in k_null])
    beta = expected @ sigma @ expected - noise
    assert direction.beta == pytest.approx(max(beta, 0.0), rel=1e-6, abs=1e-12)


def test_beta_is_floored_at_zero_when_noise_explains_all_the_spread() -> None:
    rng = np.random.default_rng(32)
    null = rng.normal(0, 1, (200, K))
    treated = rng.normal(1, 1, (200, K))
    direction = fit_direction(null, treated, noise_of(np.ones(200), 100 * np.eye(K)))
    assert direction.beta == 0.0


def test_a_metric_that_never_varies_gets_no_weight_and_no_nan() -> None:
    rng = np.random.default_rng(33)
    null = rng.normal(0, 1, (300, K))
    treated = rng.normal(0.5, 1, (200, K))
    null[:, 3] = treated[:, 3] = 0.0
    noise = noise_of(np.full(300, 0.2), np.eye(K))
    direction = fit_direction(null, treated, noise)
    assert np.isfinite(direction.w).all()
    assert abs(direction.w[3]) <= 1e-6 * np.abs(direction.w).max()
    assert np.isfinite(direction.beta)
    scores = score_fold(null, noise, direction)
    assert np.isfinite(scores).all()


def test_nothing_that_varies_gives_a_zero_direction_and_no_scores() -> None:
    zeros = np.zeros((60, K))
    noise = noise_of(np.ones(60), np.eye(K))
    direction = fit_direction(zeros, zeros, noise)
    assert np.array_equal(direction.w, np.zeros(K))
    assert direction.beta == 0.0
    assert np.isnan(score_fold(zeros, noise, direction)).all()


def test_score_fold_matches_the_formula_user_by_user() -> None:
    rng = np.random.default_rng(34)
    residual = rng.normal(0, 1, (50, K))
    noise = np.stack([random_covariance(rng, 0.3) for _ in range(50)])
    direction = Direction(w=rng.normal(0, 1, K), beta=0.7)
    expected = [
        sum(direction.w[m] * residual[u, m] for m in range(K))
        / np.sqrt(direction.beta + direction.w @ noise[u] @ direction.w)
        for u in range(50)
    ]
    np.testing.assert_allclose(score_fold(residual, noise, direction), expected, rtol=1e-12)


# --- Cross-fitting ---------------------------------------------------------------------


def cross_fit_inputs(
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 500
    residual = rng.normal(0, 1, (n, K))
    treated = rng.random(n) < 0.5
    residual[treated] += np.linspace(0, 1, K)
    noise = noise_of(rng.uniform(0.05, 0.5, n), random_covariance(rng))
    return residual, noise, rng.integers(0, FOLDS, n), ~treated, treated


def test_a_folds_direction_ignores_the_users_of_that_fold() -> None:
    residual, noise, fold, null, treated = cross_fit_inputs(41)
    before = cross_fit_directions(residual, noise, fold, null, treated)
    for f in range(FOLDS):
        perturbed, noise_perturbed = residual.copy(), noise.copy()
        here = fold == f
        perturbed[here] += np.random.default_rng(f).normal(0, 5, (here.sum(), K))
        noise_perturbed[here] *= 3
        after = cross_fit_directions(perturbed, noise_perturbed, fold, null, treated)
        for g in range(FOLDS):
            same = np.array_equal(after[g].w, before[g].w) and after[g].beta == before[g].beta
            assert same == (g == f), (f, g)


def test_each_fold_is_scored_with_a_direction_fitted_without_it() -> None:
    residual, noise, fold, null, treated = cross_fit_inputs(42)
    scores = cross_fit_scores(residual, noise, fold, null, treated)
    for f in range(FOLDS):
        rest, here = fold != f, fold == f
        # Fitted on the other folds' rows alone: the fold's users are not even there.
        direction = fit_direction(
            residual[rest][null[rest]], residual[rest][treated[rest]], noise[rest][null[rest]]
        )
        np.testing.assert_allclose(
            scores[here], score_fold(residual[here], noise[here], direction), rtol=1e-12
        )
    # In-sample, the direction bends towards the users' own noise: their scores differ.
    in_sample = score_fold(
        residual, noise, fit_direction(residual[null], residual[treated], noise[null])
    )
    assert not np.allclose(scores, in_sample)


# --- Empirical p-values ----------------------------------------------------------------


def brute_force_p(scores: np.ndarray, null: np.ndarray, own_index: list[int | None]) -> list[float]:
    """(1 + #{others in the null at least as high}) / (1 + #others), one user at a time."""
    out = []
    for score, own in zip(scores, own_index, strict=True):
        others = [v for j, v in enumerate(null) if j != own]
        out.append((1 + sum(v >= score for v in others)) / (1 + len(others)))
    return out


def test_empirical_p_values_match_a_brute_force_loop_with_ties_and_null_members() -> None:
    rng = np.random.default_rng(51)
    null = np.round(rng.normal(0, 1, 120), 1)  # rounded: many ties
    treated = np.round(rng.normal(0.8, 1, 80), 1)
    assert len(np.unique(null)) < 60
    scores = np.concatenate([null, treated])
    is_member = np.arange(200) < 120
    own: list[int | None] = [*range(120), *([None] * 80)]
    p = empirical_p_values(scores, null, is_member)
    np.testing.assert_allclose(p, brute_force_p(scores, null, own), rtol=1e-15)
    assert p.min() > 0 and p.max() == 1.0


def test_empirical_p_of_the_null_maximum_leaves_its_own_score_out() -> None:
    null = np.array([0.0, 1.0, 2.0, 3.0])
    p = empirical_p_values(np.array([3.0, 3.0, 5.0]), null, np.array([True, False, False]))
    # As a null member, 3.0 has no other null score >= it: 1/4; as an outsider, 2/5 and 1/5.
    np.testing.assert_allclose(p, [1 / 4, 2 / 5, 1 / 5])


# --- Labels ----------------------------------------------------------------------------


def test_labels_follow_the_rules_in_order() -> None:
    params = AdaptationParams(alpha=0.05, partial_p=0.10)
    p = np.array([0.001, 0.001, 0.08, 0.10, 0.2, np.nan, np.nan, 0.001, 0.5, 0.3])
    q = np.array([0.05, 0.06, 0.04, 0.5, 0.5, np.nan, np.nan, 0.01, 0.9, 0.6])
    n_pre = np.array([5, 5, 5, 5, 5, 5, 0, 0, 2, 0])
    assert label_users(p, q, n_pre, params).tolist() == [
        "adapted",  # q <= alpha
        "partial",  # q > alpha, p <= partial_p
        "adapted",  # q decides before p
        "partial",  # p == partial_p
        "unadapted",
        "insufficient_data",  # not scored
        "new",  # no pre-period, not scored
        "adapted",  # no pre-period, scored by its learning curve
        "unadapted",
        "unadapted",  # no pre-period, scored, nothing found
    ]


def test_counts_cover_every_label_method_and_reason_in_order() -> None:
    scored = pd.DataFrame(
        {
            "variation": ["0", "1", "1", "1"],
            "adaptation_label": ["new", "adapted", "new", "new"],
            "adaptation_method": ["", "learning_curve", "", ""],
            "unscored_reason": ["too_few_late", "", "too_few_early", "too_few_late"],
        }
    )
    assert list(label_counts(scored)) == list(LABELS)
    assert label_counts(scored) == {
        "adapted": 1,
        "partial": 0,
        "unadapted": 0,
        "new": 3,
        "insufficient_data": 0,
    }
    assert label_counts(scored, "0")["new"] == 1
    assert method_counts(scored, "1") == {"pre_post": 0, "learning_curve": 1}
    assert list(unscored_counts(scored)) == list(UNSCORED_REASONS)
    assert unscored_counts(scored, "1") == dict.fromkeys(UNSCORED_REASONS, 0) | {
        "too_few_early": 1,
        "too_few_late": 1,
    }


# --- The whole score -------------------------------------------------------------------

OUTPUT_COLUMNS = [
    "adaptation_score",
    "adaptation_p",
    "adaptation_q",
    "adaptation_label",
    "adaptation_method",
    "unscored_reason",
]


def method_rows(scored: pd.DataFrame, method: str) -> np.ndarray:
    return np.asarray((scored["adaptation_method"] == method).to_numpy())


def test_planted_adaptation_is_found_for_returning_and_new_users_alike() -> None:
    experiment = simulate(61, n_control=500, n_treated=500, shift=0.5, new_share=0.4)
    scored = experiment.score()
    assert scored.columns.tolist() == [*experiment.users.columns, *OUTPUT_COLUMNS]
    assert "adaptation_score" not in experiment.users  # the input is left alone
    treated = (scored["variation"] == "1").to_numpy()
    adaptive = experiment.adaptive
    score = scored["adaptation_score"].to_numpy()
    labels = scored["adaptation_label"].to_numpy()
    for method, users, least_auc in (
        ("pre_post", ~experiment.new, 0.95),
        ("learning_curve", experiment.new, 0.9),
    ):
        rows = method_rows(scored, method)
        assert (rows & users).sum() > 0.8 * rows.sum(), method  # the users it is meant for
        assert np.isfinite(score[rows]).all()
        assert auc(score[rows & adaptive], score[rows & treated & ~adaptive]) >= least_auc
        # The right sign: adapted users score high, never below zero on average.
        assert np.median(score[rows & adaptive]) > 1.5 > abs(np.median(score[rows & ~adaptive]))
        assert (labels[rows & adaptive] == "adapted").mean() >= 0.4, method
        assert (labels[rows & treated & ~adaptive] == "adapted").mean() <= 0.08, method
        assert (labels[rows & ~treated] == "adapted").mean() <= 0.05, method
    q = scored["adaptation_q"].to_numpy()
    np.testing.assert_array_equal(labels == "adapted", q <= 0.05)
    unscored = scored["adaptation_method"] == ""
    assert (scored.loc[unscored, "unscored_reason"] != "").all()
    assert (scored.loc[~unscored, "unscored_reason"] == "").all()
    assert set(scored.loc[unscored & (scored["n_pre"] == 0), "adaptation_label"]) == {"new"}


def test_a_planted_decrease_is_found_too_with_its_sign_in_the_direction() -> None:
    experiment = simulate(62, n_control=300, n_treated=300, shift=-0.3)
    scored = experiment.score()
    score = scored["adaptation_score"].to_numpy()
    adaptive, treated = experiment.adaptive, (scored["variation"] == "1").to_numpy()
    assert auc(score[adaptive], score[treated & ~adaptive]) >= 0.9
    # Controls along the treatment's direction: centred on zero.
    assert abs(np.median(score[~treated])) < 0.2


def test_under_the_null_few_users_are_adapted() -> None:
    partial = []
    for seed in range(100, 110):
        scored = simulate(seed, shift=0.0, new_share=0.3).score()
        for variation in ("0", "1"):
            rows = scored[scored["variation"] == variation]
            assert (rows["adaptation_label"] == "adapted").mean() <= 0.05, (seed, variation)
        treated = scored[scored["variation"] == "1"]
        partial.append((treated["adaptation_p"] <= 0.10).mean())
    # Treated users are exchangeable with control users here, so about 10% of them have
    # p <= 0.10.
    assert np.mean(partial) <= 0.13, partial


def hand_bins(user: str, counts: dict[int, int]) -> pd.DataFrame:
    """A hand-built user's rows of ``load_user_bins``: ``counts`` interactions per bin, each
    with 30 words and every style indicator at 0.3."""
    return pd.DataFrame(
        [
            {"user_id": user, "bin": b, "n": float(n)}
            | {f"{m}__sum": n * (30.0 if m == "prompt_length" else 0.3) for m in STYLE}
            for b, n in counts.items()
        ]
    )


def test_each_reason_a_user_is_not_scored_for() -> None:
    experiment = simulate(64, n_control=300, n_treated=300, new_share=0.3)
    users = experiment.users.copy()
    hand_built = {
        # reason: interactions per bin (-1: before first exposure; 0-2: the first days)
        "too_few_post": {-1: 6, 0: 1, 5: 1},
        "too_few_pre": {-1: 2, 7: 5},  # too short a pre-period, no first days to compare
        "too_few_early": {4: 3, 10: 6},
        "too_few_late": {0: 2, 2: 3},
        "no_interactions": {},
    }
    rows = dict(zip(hand_built, users.index[:5:], strict=True))
    bins = experiment.bins[
        ~experiment.bins["user_id"].isin(users.loc[list(rows.values()), "user_id"])
    ]
    for reason, row in rows.items():
        counts = hand_built[reason]
        bins = pd.concat([bins, hand_bins(users.loc[row, "user_id"], counts)])
        users.loc[row, "n_pre"] = counts.get(-1, 0)
        users.loc[row, "n_post"] = sum(n for b, n in counts.items() if b >= 0)
    scored = score_adaptation(users, experiment.moments, bins, "0", ["1"])
    for reason, row in rows.items():
        assert scored.loc[row, "unscored_reason"] == reason, reason
        assert np.isnan(scored.loc[row, "adaptation_p"])
        assert scored.loc[row, "adaptation_method"] == ""
        label = "new" if users.loc[row, "n_pre"] == 0 else "insufficient_data"
        assert scored.loc[row, "adaptation_label"] == label, reason
    others = scored.drop(index=list(rows.values()))
    assert set(others["adaptation_method"]) == {"pre_post", "learning_curve", ""}
    assert others["adaptation_method"].ne("").mean() > 0.8


@pytest.mark.parametrize(
    ("n_control", "scored"),
    [(MIN_CONTROLS_PER_FOLD * FOLDS - 1, False), (MIN_CONTROLS_PER_FOLD * FOLDS, True)],
)
def test_nobody_is_scored_with_fewer_than_ten_eligible_controls_per_fold(
    n_control: int, scored: bool
) -> None:
    assert MIN_CONTROLS_PER_FOLD * FOLDS == 50  # as AdaptationParams documents
    result = simulate(65, n_control=n_control, n_treated=120).score()
    if scored:
        assert result["adaptation_p"].notna().all()
    else:
        assert (result["adaptation_label"] == "insufficient_data").all()
        assert (result["unscored_reason"] == "too_few_controls").all()
        assert result[["adaptation_score", "adaptation_p", "adaptation_q"]].isna().all().all()


def test_without_treatments_nobody_is_scored() -> None:
    result = simulate(66).score(treatments=())
    assert (result["adaptation_label"] == "insufficient_data").all()
    assert (result["unscored_reason"] == "no_treatment").all()


def test_style_that_never_varies_is_not_scored_and_warns_of_nothing() -> None:
    # 40 users with 14 interactions each, every prompt alike: degenerate, quietly unscored.
    users = pd.DataFrame(
        {
            "user_id": [f"user-{i:05d}" for i in range(120)],
            "variation": ["0", "1"] * 60,
            "first_exposure": START + pd.to_timedelta(np.arange(120) % 9, unit="D"),
            "n_pre": 7,
            "n_post": 7,
        }
    )
    bins = pd.DataFrame(
        [
            {"user_id": u, "bin": b, "n": 7.0, **{f"{m}__sum": 0.0 for m in STYLE}}
            for u in users["user_id"]
            for b in (-1, 5)
        ]
    )
    moments = pd.DataFrame(
        [
            {"user_id": u, "post": p, "n": 7.0}
            | {f"{m}__{s}": 0.0 for m in STYLE for s in ("sum", "sumsq")}
            | {f"{a}__x__{b}": 0.0 for a, b in STYLE_PAIRS}
            for u in users["user_id"]
            for p in (0, 1)
        ]
    )
    scored = score_adaptation(users, moments, bins, "0", ["1"])
    assert (scored["unscored_reason"] == "no_style_variation").all()
    assert (scored["adaptation_label"] == "insufficient_data").all()


def test_controls_are_scored_along_the_first_treatments_direction() -> None:
    experiment = simulate(67, n_control=150, n_treated=300, shift=0.3)
    users = experiment.users.copy()
    users.loc[users.index[300:], "variation"] = "2"  # a second treatment
    scored = score_adaptation(users, experiment.moments, experiment.bins, "0", ["1", "2"])
    first = users["variation"] != "2"
    only_first = score_adaptation(
        users[first],
        experiment.moments,
        experiment.bins[experiment.bins["user_id"].isin(users.loc[first, "user_id"])],
        "0",
        ["1"],
    )
    controls = scored["variation"] == "0"
    for column in ("adaptation_score", "adaptation_p"):
        np.testing.assert_allclose(
            scored.loc[controls, column].to_numpy(),
            only_first.loc[only_first["variation"] == "0", column].to_numpy(),
            rtol=1e-12,
        )


# --- On the demo data --------------------------------------------------------------------


def demo_scores(tmp_path: Path, seed: int, new_user_share: float) -> pd.DataFrame:
    """The demo of ``seed`` (4,000 users) ingested into SQLite and analysed; its users with
    their scores and ground truth."""
    from analytics.analysis.params import AnalysisParams
    from analytics.analysis.pipeline import run_analysis
    from analytics.db import get_engine
    from analytics.demo import DemoConfig
    from tests.demo_data import load_demo

    engine = get_engine(f"sqlite:///{tmp_path / f'demo{seed}.db'}")
    truth = load_demo(
        engine, tmp_path, DemoConfig(n_users=4000, seed=seed, new_user_share=new_user_share)
    )
    result = run_analysis(engine, AnalysisParams("chat-model-upgrade"))
    engine.dispose()
    return result.users.merge(truth[["user_id", "adaptive", "is_new"]], on="user_id")


def classification(rows: pd.DataFrame) -> tuple[float, float, float]:
    """ROC AUC of the score, precision and recall of ``adapted``, against the truth."""
    adaptive = rows["adaptive"].astype(bool).to_numpy()
    score = rows["adaptation_score"].to_numpy()
    adapted = (rows["adaptation_label"] == "adapted").to_numpy()
    return (
        auc(score[adaptive], score[~adaptive]),
        (adapted & adaptive).sum() / adapted.sum(),
        (adapted & adaptive).sum() / adaptive.sum(),
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_demos_adaptation_is_found_for_returning_and_new_users(
    tmp_path: Path, seed: int
) -> None:
    users = demo_scores(tmp_path, seed, new_user_share=0.4)
    treated = users[users["variation"] == "1"]
    controls = users[users["variation"] == "0"]
    returning = treated[treated["adaptation_method"] == "pre_post"]
    new = treated[(treated["adaptation_method"] == "learning_curve") & treated["is_new"]]
    assert len(new) >= 200  # new users scored by their trajectory
    roc, precision, recall = classification(new)
    assert roc >= 0.95 and precision >= 0.95 and recall >= 0.7, (roc, precision, recall)
    roc, precision, recall = classification(returning)
    assert roc >= 0.965 and precision >= 0.95 and recall >= 0.8, (roc, precision, recall)
    # Users with enough interactions since exposure to be told apart: the targets.
    heavy = returning[returning["n_post"] >= 13]
    roc, precision, recall = classification(heavy)
    assert roc >= 0.99 and precision >= 0.95 and recall >= 0.95, (roc, precision, recall)
    for method in ADAPTATION_METHODS:
        rows = controls[controls["adaptation_method"] == method]
        assert (rows["adaptation_label"] == "adapted").mean() <= 0.05, method
    # Every user not scored says why; new users are `new` only when not scored.
    unscored = users[users["adaptation_method"] == ""]
    assert unscored["unscored_reason"].isin(list(UNSCORED_REASONS)).all()
    assert (users.loc[users["adaptation_label"] == "new", "adaptation_method"] == "").all()


# --- What the surfaces say -----------------------------------------------------------------


def test_an_older_analysis_document_reads_without_the_scoring_counts() -> None:
    from analytics.documents import AnalysisDocument

    older = {
        "experiment_id": "chat-model-upgrade",
        "control": "0",
        "variations": ["0", "1"],
        "adaptation": {"half_life_days": 2.5, "labels": {"adapted": 3, "new": 4}},
    }
    adaptation = AnalysisDocument.from_json(older).adaptation
    assert (adaptation.methods, adaptation.unscored, adaptation.unscored_by_variation) == (
        {},
        {},
        {},
    )
    assert (adaptation.scored_users, adaptation.unscored_users) == (3, 4)
    newer = AnalysisDocument.from_json(older).to_json()
    newer["adaptation"] |= {
        "methods": {"pre_post": 3, "learning_curve": 0},
        "unscored": {"too_few_late": 4},
        "unscored_by_variation": {"1": {"too_few_late": 4}},
    }
    again = AnalysisDocument.from_json(newer)
    assert again.to_json() == newer
    assert again.adaptation.unscored == {"too_few_late": 4}


def test_the_cli_says_why_nobody_was_scored_and_what_scoring_needs() -> None:
    from analytics.documents import AnalysisDocument
    from rollout.cli.analysis import _print_scoring
    from rollout.cli.console import out

    document = AnalysisDocument.from_json(
        {
            "experiment_id": "chat-model-upgrade",
            "control": "0",
            "variations": ["0", "1"],
            "adaptation": {
                "labels": {"insufficient_data": 30, "new": 10},
                "methods": {"pre_post": 0, "learning_curve": 0},
                "unscored": {"too_few_controls": 38, "too_few_late": 2},
            },
        }
    )
    with out.capture() as captured:
        _print_scoring(document)
    text = " ".join(captured.get().split())
    assert "not scored: 38 too_few_controls (fewer than 50 eligible control users" in text
    assert "not scored: 2 too_few_late" in text
    assert "nobody could be scored: each method needs at least 50 eligible control users" in text
    assert "scored by" not in text
