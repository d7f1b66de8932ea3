"""Second-disruption risk: bounded, monotone, and ordered like the cohorts it summarises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollout.risk import (
    RiskParams,
    adaptation_evidence,
    decreasing_density,
    null_share,
    score_users,
    second_disruption_risk,
    summarise_by_cohort,
)

probability = st.floats(0.0, 1.0)
days = st.floats(0.0, 60.0)
counts = st.integers(0, 500)


def risk(evidence: float, d: float, n: int, h: float | None = 2.8) -> float:
    return float(
        second_disruption_risk(
            np.array([evidence]), np.array([d]), np.array([n]), RiskParams(half_life_days=h)
        )[0]
    )


@given(probability, probability, days, days, counts, counts)
def test_more_adapted_longer_exposed_busier_never_lowers_risk(
    a1: float, a2: float, d1: float, d2: float, n1: int, n2: int
) -> None:
    low = risk(min(a1, a2), min(d1, d2), min(n1, n2))
    high = risk(max(a1, a2), max(d1, d2), max(n1, n2))
    assert 0.0 <= low <= high <= 1.0


def test_reference_points() -> None:
    assert risk(0.0, 30, 100) == 0.0  # no evidence of adaptation
    assert risk(1.0, 0, 100) == 0.0  # not exposed yet
    # Fully adapted, one half-life in, very active: 1 * 0.5 * ~1.
    assert abs(risk(1.0, 2.8, 10**6) - 0.5) < 1e-4
    assert risk(0.9, 10, 20, h=None) > 0  # default half-life when none was fitted
    with pytest.raises(ValueError, match="evidence"):
        risk(float("nan"), 10, 20)


def least_concave_majorant_slopes(p: np.ndarray) -> np.ndarray:
    """Independent Grenander estimate: the upper convex hull of the ECDF points (monotone
    chain), its slope evaluated at each p."""
    x = np.r_[0.0, np.sort(p)]
    y = np.arange(len(x)) / len(p)
    hull: list[int] = []
    for i in range(len(x)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (y[b] - y[a]) * (x[i] - x[a]) <= (y[i] - y[a]) * (x[b] - x[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    knots = x[hull]
    slopes = np.diff(y[hull]) / np.diff(knots)
    index = np.searchsorted(knots, p, side="left") - 1
    return slopes[np.clip(index, 0, len(slopes) - 1)]


def test_decreasing_density_is_the_least_concave_majorant_of_the_ecdf() -> None:
    rng = np.random.default_rng(5)
    p = np.r_[rng.uniform(0, 1, 700), rng.beta(0.3, 6, 300)]
    np.testing.assert_allclose(decreasing_density(p), least_concave_majorant_slopes(p), rtol=1e-9)


def test_null_share_is_storeys_estimate() -> None:
    p = np.array([0.01, 0.2, 0.6, 0.7, 0.9, 0.95])
    assert null_share(p) == pytest.approx(min(1.0, 4 / (6 * 0.5)))
    assert null_share(np.array([0.1, 0.6])) == pytest.approx(1.0)


def test_evidence_finds_planted_adaptation_and_stays_quiet_under_the_null() -> None:
    rng = np.random.default_rng(6)
    null = rng.uniform(0, 1, 3000)
    assert adaptation_evidence(null).mean() < 0.03
    adapted = rng.beta(0.2, 8, 1200)  # small p-values: users who did adapt
    p = np.r_[null[:1800], adapted]
    truth = np.r_[np.zeros(1800), np.ones(1200)]
    evidence = adaptation_evidence(p)
    # Calibrated on average: summed evidence is about the number who adapted.
    assert evidence.sum() == pytest.approx(truth.sum(), rel=0.15)
    assert evidence[truth == 1].mean() > 0.8 and evidence[truth == 0].mean() < 0.2
    order = np.argsort(p)
    assert np.all(np.diff(evidence[order]) <= 1e-12)  # never rises with p


def test_cohort_summary_orders_adapted_above_unadapted() -> None:
    rng = np.random.default_rng(3)
    n = 600
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "adaptation_label": rng.choice(["adapted", "unadapted", "new"], n),
            "first_exposure": pd.Timestamp("2026-10-20", tz="UTC")
            + pd.to_timedelta(rng.uniform(0, 20, n), unit="D"),
            "n_post": rng.integers(3, 60, n),
            "variation": "1",
        }
    )
    frame["adaptation_p"] = np.where(
        frame["adaptation_label"] == "adapted", rng.uniform(0, 0.01, n), rng.uniform(0.1, 1, n)
    )
    frame.loc[frame["adaptation_label"] == "new", "adaptation_p"] = np.nan
    scored = score_users(frame, pd.Timestamp("2026-11-16", tz="UTC"), RiskParams(2.8))
    summary = summarise_by_cohort(scored)
    assert summary.loc["adapted", "mean_risk"] > summary.loc["unadapted", "mean_risk"]
    # New users get the adapted share of the scored users of their variation, times tenure.
    scored_users = scored[scored["adaptation_p"].notna()]
    new = scored[scored["adaptation_label"] == "new"]
    assert new["evidence"].unique() == pytest.approx([scored_users["evidence"].mean()])
    assert summary["users"].sum() == n
    assert scored["risk"].between(0, 1).all()


def test_users_of_a_variation_where_nobody_adapted_carry_little_risk() -> None:
    # Under the null p is uniform: 1 - p would put half of these users at risk.
    rng = np.random.default_rng(4)
    n = 2000
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "variation": "1",
            "adaptation_label": "unadapted",
            "adaptation_p": rng.uniform(0, 1, n),
            "first_exposure": pd.Timestamp("2026-10-20", tz="UTC"),
            "n_post": 1000,
        }
    )
    scored = score_users(frame, pd.Timestamp("2026-11-16", tz="UTC"), RiskParams(2.8))
    assert scored["evidence"].max() < 0.5
    assert scored["risk"].mean() < 0.05


def test_new_users_scored_by_their_trajectory_get_their_own_evidence_per_method() -> None:
    # Returning users (pre_post) with strong evidence, new users (learning_curve) with weak
    # p-values but some adapted, and new users still unscored.
    rng = np.random.default_rng(8)
    n_returning, n_new, n_unscored = 1500, 600, 200
    returning_p = np.r_[rng.uniform(0, 1, 900), rng.beta(0.2, 8, 600)]
    new_p = np.r_[rng.uniform(0, 1, 450), rng.beta(0.5, 4, 150)]
    n = n_returning + n_new + n_unscored
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "variation": "1",
            "adaptation_p": np.r_[returning_p, new_p, np.full(n_unscored, np.nan)],
            "adaptation_method": ["pre_post"] * n_returning
            + ["learning_curve"] * n_new
            + [""] * n_unscored,
            "adaptation_label": ["unadapted"] * (n_returning + n_new) + ["new"] * n_unscored,
            "first_exposure": pd.Timestamp("2026-10-20", tz="UTC"),
            "n_post": 30,
        }
    )
    scored = score_users(frame, pd.Timestamp("2026-11-16", tz="UTC"), RiskParams(2.8))
    # Each method's users get the local fdr of their own method's p-values.
    for method, p in (("pre_post", returning_p), ("learning_curve", new_p)):
        np.testing.assert_allclose(
            scored.loc[scored["adaptation_method"] == method, "evidence"],
            adaptation_evidence(p),
        )
    # A new user whose trajectory shows nothing carries little risk, not the base rate.
    quiet_new = (scored["adaptation_method"] == "learning_curve") & (scored["adaptation_p"] > 0.5)
    unscored = scored["adaptation_method"] == ""
    assert scored.loc[quiet_new, "risk"].max() < scored.loc[unscored, "risk"].min()
    # Unscored users keep the documented base rate: the mean evidence of the scored ones.
    base = scored.loc[~unscored, "evidence"].mean()
    assert scored.loc[unscored, "evidence"].unique() == pytest.approx([base])
    # Rows without the method column (stored runs' rows) pool a variation's p-values.
    pooled = score_users(
        frame.drop(columns="adaptation_method"), pd.Timestamp("2026-11-16", tz="UTC"), RiskParams()
    )
    scored_rows = frame["adaptation_p"].notna()
    np.testing.assert_allclose(
        pooled.loc[scored_rows, "evidence"],
        adaptation_evidence(frame.loc[scored_rows, "adaptation_p"].to_numpy()),
    )
