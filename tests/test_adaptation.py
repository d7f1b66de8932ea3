"""Tests of analytics.analysis.adaptation, step by step, against independent implementations.

Each step of the score is compared with a second way of computing it: numpy's ``cov`` on raw
interactions (within-user covariance), a pandas groupby (centring), ``numpy.linalg.solve``
(the direction), a brute-force loop (empirical p-values). Then seeded simulations of a few
hundred users check the whole score: planted adaptation along one metric is found, and under
the null few users are ``adapted``. Every random number is seeded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from analytics.analysis.adaptation import (
    FOLDS,
    LABELS,
    MIN_CONTROLS_PER_FOLD,
    RIDGE,
    STYLE,
    AdaptationParams,
    Direction,
    assign_folds,
    centre_changes,
    cross_fit_directions,
    cross_fit_scores,
    eligible_users,
    empirical_p_values,
    exposure_strata,
    fit_direction,
    label_counts,
    label_users,
    noise_factors,
    score_adaptation,
    score_fold,
    style_changes,
    within_user_covariance,
)
from analytics.analysis.user_periods import STYLE_PAIRS

K = len(STYLE)
START = pd.Timestamp("2026-10-19", tz="UTC")
RATES = [m for m in STYLE if m != "prompt_length"]


# --- Simulated interactions ------------------------------------------------------------


def simulate_interactions(
    rng: np.random.Generator,
    variations: np.ndarray,
    adaptive: np.ndarray,
    shift: float,
    n_range: tuple[int, int] = (6, 30),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw interactions of each user before and after first exposure: prompt length around
    the user's own mean, 0/1 style indicators at the user's own rates, everybody's prompts a
    little longer for each day exposure came later (calendar drift), and ``shift`` added to
    the hedging rate of ``adaptive`` users after exposure. Returns (interactions, users)."""
    n_users = len(variations)
    users = pd.DataFrame(
        {
            "user_id": [f"user-{i:05d}" for i in range(n_users)],
            "variation": variations,
            "first_exposure": START + pd.to_timedelta(rng.uniform(0, 28, n_users), unit="D"),
            "n_pre": rng.integers(*n_range, n_users),
            "n_post": rng.integers(*n_range, n_users),
        }
    )
    exposure_day = (users["first_exposure"] - START).dt.total_seconds().to_numpy() / 86_400
    base_length = rng.normal(30.0, 6.0, n_users)
    base_rate = rng.uniform(0.1, 0.5, (n_users, len(RATES)))
    frames = []
    for post, counts in ((0, users["n_pre"].to_numpy()), (1, users["n_post"].to_numpy())):
        who = np.repeat(np.arange(n_users), counts)
        rates = base_rate[who].copy()
        if post:
            rates[:, RATES.index("hedge_rate")] += shift * adaptive[who]
        frame = pd.DataFrame(
            rng.random((len(who), len(RATES))) < np.clip(rates, 0, 1), columns=RATES
        ).astype(float)
        frame["prompt_length"] = (
            base_length[who] + post * 0.3 * exposure_day[who] + rng.normal(0, 8.0, len(who))
        )
        frame["user"], frame["post"] = who, post
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), users


def period_means(interactions: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """``users`` with the ``{metric}__pre`` and ``{metric}__post`` columns the score reads."""
    means = interactions.groupby(["user", "post"])[STYLE].mean().unstack("post")
    out = users.copy()
    for metric in STYLE:
        out[f"{metric}__pre"] = means[(metric, 0)].reindex(range(len(users))).to_numpy()
        out[f"{metric}__post"] = means[(metric, 1)].reindex(range(len(users))).to_numpy()
    return out


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


def simulate(
    seed: int,
    n_control: int = 200,
    n_treated: int = 200,
    shift: float = 0.0,
    adaptive_share: float = 0.5,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(users, moments, adaptive) of a seeded experiment with variations "0" and "1"."""
    rng = np.random.default_rng(seed)
    variations = np.array(["0"] * n_control + ["1"] * n_treated)
    adaptive = (variations == "1") & (rng.random(len(variations)) < adaptive_share)
    interactions, users = simulate_interactions(rng, variations, adaptive, shift)
    return period_means(interactions, users), second_moments(interactions), adaptive


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


# --- Changes, eligibility, strata, noise factors, folds --------------------------------


def test_style_changes_are_post_minus_pre_in_style_order() -> None:
    users = pd.DataFrame(
        {f"{m}__pre": [float(i), np.nan] for i, m in enumerate(STYLE)}
        | {f"{m}__post": [10.0 * i, 1.0] for i, m in enumerate(STYLE)}
    )
    change = style_changes(users)
    assert change.shape == (2, K)
    np.testing.assert_array_equal(change[0], [9.0 * i for i in range(K)])
    assert np.isnan(change[1]).all()


def test_eligible_users_need_both_periods_and_finite_changes() -> None:
    params = AdaptationParams(min_pre=3, min_post=4)
    users = pd.DataFrame({"n_pre": [3, 2, 3, 3, 10], "n_post": [4, 4, 3, 4, 10]})
    change = np.zeros((5, K))
    change[3, 2] = np.nan
    assert eligible_users(users, change, params).tolist() == [True, False, False, False, True]


def test_exposure_strata_count_whole_periods_from_the_first_exposure() -> None:
    first = pd.Series(START + pd.to_timedelta([3.0, 0.0, 6.99, 7.0, 15.5, 13.9], unit="D"))
    assert exposure_strata(first, 7.0).tolist() == [0, 0, 0, 1, 2, 1]
    assert exposure_strata(first, 2.0).tolist() == [1, 0, 3, 3, 7, 6]


def test_noise_factors_add_the_inverse_counts_and_floor_them_at_one() -> None:
    k = noise_factors(np.array([4, 0, 1]), np.array([5, 2, 0]))
    np.testing.assert_array_equal(k, [1 / 4 + 1 / 5, 1 + 1 / 2, 2.0])


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


def test_centring_matches_a_pandas_groupby() -> None:
    rng = np.random.default_rng(21)
    n = 600
    strata = rng.integers(0, 5, n)
    change = rng.normal(0, 1, (n, K)) + strata[:, None] * np.arange(K)  # drift by stratum
    reference = rng.random(n) < 0.4
    reference[(strata == 4) & reference] = rng.random(((strata == 4) & reference).sum()) < 0.1
    minimum = 30
    sizes = np.bincount(strata[reference])
    assert sizes.min() < minimum <= np.sort(sizes)[1]  # one stratum falls back, others do not
    np.testing.assert_allclose(
        centre_changes(change, strata, reference, minimum),
        groupby_centre(change, strata, reference, minimum),
        rtol=1e-12,
        atol=1e-12,
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
    np.testing.assert_allclose(residual[:60], change[:60] - change[:40].mean(axis=0))
    np.testing.assert_allclose(residual[60:], change[60:] - overall)
    reference[79] = True  # now 20: stratum 1 gets its own mean
    residual = centre_changes(change, strata, reference, min_stratum_controls=20)
    np.testing.assert_allclose(residual[60:90], change[60:90] - change[60:80].mean(axis=0))


def test_centring_without_controls_leaves_changes_as_they_are() -> None:
    change = np.random.default_rng(23).normal(0, 1, (20, K))
    residual = centre_changes(change, np.zeros(20, dtype=int), np.zeros(20, dtype=bool), 30)
    np.testing.assert_array_equal(residual, change)


# --- Direction and scores --------------------------------------------------------------


def random_covariance(rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    factor = rng.normal(0, scale, (K, K))
    return np.asarray(factor @ factor.T + scale**2 * np.eye(K))


def test_direction_solves_the_fisher_equations_when_sigma_is_well_conditioned() -> None:
    rng = np.random.default_rng(31)
    null = rng.multivariate_normal(np.zeros(K), random_covariance(rng), 400)
    treated = rng.multivariate_normal(np.linspace(-1, 1, K), random_covariance(rng), 300)
    within = random_covariance(rng, 3.0)
    k_null = rng.uniform(0.05, 0.5, 400)
    sigma = np.cov(null, rowvar=False)
    assert np.linalg.cond(sigma) < 1e3
    direction = fit_direction(null, treated, within, k_null)
    expected = np.linalg.solve(sigma, treated.mean(axis=0) - null.mean(axis=0))
    np.testing.assert_allclose(direction.w, expected, rtol=1e-6)
    # The ridge is RIDGE times the trace: exactly that system, to rounding.
    ridged = sigma + RIDGE * np.trace(sigma) * np.eye(K)
    np.testing.assert_allclose(
        direction.w, np.linalg.solve(ridged, treated.mean(axis=0) - null.mean(axis=0)), rtol=1e-11
    )
    assert direction.omega == pytest.approx(expected @ within @ expected, rel=1e-6)
    beta = expected @ sigma @ expected - k_null.mean() * direction.omega
    assert direction.beta == pytest.approx(max(beta, 0.0), rel=1e-6, abs=1e-12)


def test_beta_is_floored_at_zero_when_noise_explains_all_the_spread() -> None:
    rng = np.random.default_rng(32)
    null = rng.normal(0, 1, (200, K))
    treated = rng.normal(1, 1, (200, K))
    direction = fit_direction(null, treated, 100 * np.eye(K), np.ones(200))
    assert direction.omega > direction.w @ np.cov(null, rowvar=False) @ direction.w
    assert direction.beta == 0.0


def test_a_metric_that_never_varies_gets_no_weight_and_no_nan() -> None:
    rng = np.random.default_rng(33)
    null = rng.normal(0, 1, (300, K))
    treated = rng.normal(0.5, 1, (200, K))
    null[:, 3] = treated[:, 3] = 0.0
    direction = fit_direction(null, treated, np.eye(K), np.full(300, 0.2))
    assert np.isfinite(direction.w).all()
    assert abs(direction.w[3]) <= 1e-6 * np.abs(direction.w).max()
    assert np.isfinite([direction.omega, direction.beta]).all()
    scores = score_fold(null, np.full(300, 0.2), direction)
    assert np.isfinite(scores).all()


def test_nothing_that_varies_gives_a_zero_direction_and_no_scores() -> None:
    zeros = np.zeros((60, K))
    direction = fit_direction(zeros, zeros, np.eye(K), np.ones(60))
    assert np.array_equal(direction.w, np.zeros(K))
    assert (direction.omega, direction.beta) == (0.0, 0.0)
    assert np.isnan(score_fold(zeros, np.ones(60), direction)).all()


def test_score_fold_matches_the_formula_user_by_user() -> None:
    rng = np.random.default_rng(34)
    residual = rng.normal(0, 1, (50, K))
    k = rng.uniform(0.05, 1.0, 50)
    direction = Direction(w=rng.normal(0, 1, K), omega=2.5, beta=0.7)
    expected = [
        sum(direction.w[m] * residual[u, m] for m in range(K))
        / np.sqrt(direction.beta + k[u] * direction.omega)
        for u in range(50)
    ]
    np.testing.assert_allclose(score_fold(residual, k, direction), expected, rtol=1e-12)


# --- Cross-fitting ---------------------------------------------------------------------


def cross_fit_inputs(
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 500
    residual = rng.normal(0, 1, (n, K))
    treated = rng.random(n) < 0.5
    residual[treated] += np.linspace(0, 1, K)
    return (
        residual,
        rng.uniform(0.05, 0.5, n),
        random_covariance(rng),
        rng.integers(0, FOLDS, n),
        ~treated,
        treated,
    )


def test_a_folds_direction_ignores_the_users_of_that_fold() -> None:
    residual, k, within, fold, null, treated = cross_fit_inputs(41)
    before = cross_fit_directions(residual, k, within, fold, null, treated)
    for f in range(FOLDS):
        perturbed, k_perturbed = residual.copy(), k.copy()
        here = fold == f
        perturbed[here] += np.random.default_rng(f).normal(0, 5, (here.sum(), K))
        k_perturbed[here] *= 3
        after = cross_fit_directions(perturbed, k_perturbed, within, fold, null, treated)
        for g in range(FOLDS):
            same = (
                np.array_equal(after[g].w, before[g].w)
                and after[g].omega == before[g].omega
                and after[g].beta == before[g].beta
            )
            assert same == (g == f), (f, g)


def test_each_fold_is_scored_with_a_direction_fitted_without_it() -> None:
    residual, k, within, fold, null, treated = cross_fit_inputs(42)
    scores = cross_fit_scores(residual, k, within, fold, null, treated)
    for f in range(FOLDS):
        rest, here = fold != f, fold == f
        # Fitted on the other folds' rows alone: the fold's users are not even there.
        direction = fit_direction(
            residual[rest][null[rest]], residual[rest][treated[rest]], within, k[rest][null[rest]]
        )
        np.testing.assert_allclose(
            scores[here], score_fold(residual[here], k[here], direction), rtol=1e-12
        )
    # In-sample, the direction bends towards the users' own noise: their scores differ.
    in_sample = score_fold(
        residual, k, fit_direction(residual[null], residual[treated], within, k[null])
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
    p = np.array([0.001, 0.001, 0.08, 0.10, 0.2, np.nan, np.nan, 0.001, 0.5])
    q = np.array([0.05, 0.06, 0.04, 0.5, 0.5, np.nan, np.nan, 0.01, 0.9])
    n_pre = np.array([5, 5, 5, 5, 5, 5, 0, 0, 2])
    assert label_users(p, q, n_pre, params).tolist() == [
        "adapted",  # q <= alpha
        "partial",  # q > alpha, p <= partial_p
        "adapted",  # q decides before p
        "partial",  # p == partial_p
        "unadapted",
        "insufficient_data",  # not scored
        "new",  # no pre-period, not scored
        "new",  # no pre-period wins over any p
        "unadapted",
    ]


def test_label_counts_cover_every_label_in_order() -> None:
    scored = pd.DataFrame(
        {"variation": ["0", "1", "1", "1"], "adaptation_label": ["new", "adapted", "new", "new"]}
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


# --- The whole score -------------------------------------------------------------------


def test_planted_adaptation_along_one_metric_is_found() -> None:
    users, moments, adaptive = simulate(61, shift=0.5)
    scored = score_adaptation(users, moments, "0", ["1"])
    assert scored.columns.tolist() == [
        *users.columns,
        "adaptation_score",
        "adaptation_p",
        "adaptation_q",
        "adaptation_label",
    ]
    assert "adaptation_score" not in users  # the input is left alone
    treated = (scored["variation"] == "1").to_numpy()
    score = scored["adaptation_score"].to_numpy()
    assert np.isfinite(score).all()
    assert auc(score[adaptive], score[treated & ~adaptive]) >= 0.95
    labels = scored["adaptation_label"].to_numpy()
    assert (labels[adaptive] == "adapted").mean() >= 0.7
    assert (labels[treated & ~adaptive] == "adapted").mean() <= 0.05
    assert (labels[~treated] == "adapted").mean() <= 0.05
    q = scored["adaptation_q"].to_numpy()
    np.testing.assert_array_equal(labels == "adapted", q <= 0.05)


def test_under_the_null_few_users_are_adapted() -> None:
    partial = []
    for seed in range(100, 110):
        users, moments, _ = simulate(seed, shift=0.0)
        scored = score_adaptation(users, moments, "0", ["1"])
        for variation in ("0", "1"):
            rows = scored[scored["variation"] == variation]
            assert (rows["adaptation_label"] == "adapted").mean() <= 0.05, (seed, variation)
        treated = scored[scored["variation"] == "1"]
        partial.append((treated["adaptation_p"] <= 0.10).mean())
    # Treated users are exchangeable with control users here, so about 10% of them have
    # p <= 0.10 (0.0995 over these seeds; 0.16 with a direction fitted in-sample).
    assert np.mean(partial) <= 0.13, partial


def test_users_without_enough_interactions_are_not_scored() -> None:
    users, moments, _ = simulate(64)
    users.loc[0, "n_pre"] = 2
    users.loc[1, "n_post"] = 2
    users.loc[2, "n_pre"] = 0
    for metric in STYLE:
        users.loc[2, f"{metric}__pre"] = np.nan
    scored = score_adaptation(users, moments, "0", ["1"])
    assert scored["adaptation_label"].tolist()[:3] == ["insufficient_data"] * 2 + ["new"]
    assert scored["adaptation_p"].iloc[:3].isna().all()
    assert scored["adaptation_score"].iloc[3:].notna().all()


@pytest.mark.parametrize(
    ("n_control", "scored"),
    [(MIN_CONTROLS_PER_FOLD * FOLDS - 1, False), (MIN_CONTROLS_PER_FOLD * FOLDS, True)],
)
def test_nobody_is_scored_with_fewer_than_ten_eligible_controls_per_fold(
    n_control: int, scored: bool
) -> None:
    assert MIN_CONTROLS_PER_FOLD * FOLDS == 50  # as AdaptationParams documents
    users, moments, _ = simulate(65, n_control=n_control, n_treated=120)
    result = score_adaptation(users, moments, "0", ["1"])
    if scored:
        assert result["adaptation_p"].notna().all()
    else:
        assert (result["adaptation_label"] == "insufficient_data").all()
        assert result[["adaptation_score", "adaptation_p", "adaptation_q"]].isna().all().all()


def test_without_treatments_nobody_is_scored() -> None:
    users, moments, _ = simulate(66)
    result = score_adaptation(users, moments, "0", [])
    assert (result["adaptation_label"] == "insufficient_data").all()


def test_controls_are_scored_along_the_first_treatments_direction() -> None:
    users, moments, _ = simulate(67, n_control=150, n_treated=300, shift=0.3)
    users.loc[users.index[300:], "variation"] = "2"  # a second treatment
    scored = score_adaptation(users, moments, "0", ["1", "2"])
    only_first = score_adaptation(users[users["variation"] != "2"], moments, "0", ["1"])
    controls = scored["variation"] == "0"
    for column in ("adaptation_score", "adaptation_p"):
        np.testing.assert_allclose(
            scored.loc[controls, column].to_numpy(),
            only_first.loc[only_first["variation"] == "0", column].to_numpy(),
            rtol=1e-12,
        )
