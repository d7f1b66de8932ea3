"""Second-disruption risk: bounded, monotone, and ordered like the cohorts it summarises."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from rollout.risk import RiskParams, score_users, second_disruption_risk, summarise_by_cohort

probability = st.floats(0.0, 1.0)
days = st.floats(0.0, 60.0)
counts = st.integers(0, 500)
labels = st.sampled_from(["adapted", "partial", "unadapted"])


def risk(label: str, p: float, d: float, n: int, h: float | None = 2.8) -> float:
    return float(
        second_disruption_risk(
            np.array([label]),
            np.array([p]),
            np.array([d]),
            np.array([n]),
            RiskParams(half_life_days=h),
        )[0]
    )


@given(labels, probability, probability, days, days, counts, counts)
def test_more_adapted_longer_exposed_busier_never_lowers_risk(
    label: str, p1: float, p2: float, d1: float, d2: float, n1: int, n2: int
) -> None:
    low = risk(label, max(p1, p2), min(d1, d2), min(n1, n2))
    high = risk(label, min(p1, p2), max(d1, d2), max(n1, n2))
    assert 0.0 <= low <= high <= 1.0


def test_reference_points() -> None:
    assert risk("unadapted", 1.0, 30, 100) == 0.0  # no evidence of adaptation
    assert risk("adapted", 0.0, 0, 100) == 0.0  # not exposed yet
    # Fully adapted, one half-life in, very active: 1 * 0.5 * ~1.
    assert abs(risk("adapted", 0.0, 2.8, 10**6) - 0.5) < 1e-4
    # New users carry risk by tenure alone; users without data sit in between.
    assert risk("new", float("nan"), 28, 20) > risk("insufficient_data", float("nan"), 28, 20)
    assert risk("new", float("nan"), 1, 20) < risk("new", float("nan"), 14, 20)
    assert risk("adapted", 0.01, 10, 20, h=None) > 0  # default half-life when none was fitted


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
        }
    )
    frame["adaptation_p"] = np.where(
        frame["adaptation_label"] == "adapted", rng.uniform(0, 0.01, n), rng.uniform(0.1, 1, n)
    )
    frame.loc[frame["adaptation_label"] == "new", "adaptation_p"] = np.nan
    scored = score_users(frame, pd.Timestamp("2026-11-16", tz="UTC"), RiskParams(2.8))
    summary = summarise_by_cohort(scored)
    assert summary.loc["adapted", "mean_risk"] > summary.loc["unadapted", "mean_risk"]
    assert summary["users"].sum() == n
    assert scored["risk"].between(0, 1).all()
