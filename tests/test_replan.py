"""Re-planning from what a stage saw (rollout.replans): the disruption estimate against an
independent implementation and seeded simulations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from rollout.guardrails import Guardrail
from rollout.replans import estimate_disruption

GUARDRAILS = [Guardrail("complaint_rate", 0.02), Guardrail("retry_rate", 0.03)]


def test_one_guardrail_gives_the_welch_interval_in_units_of_the_shock() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(0.1, 0.05, 400)
    moved = rng.random(400) < 0.3
    values[moved] += 0.02
    metrics = pd.DataFrame({"complaint_rate": values})
    estimate = estimate_disruption(metrics, moved, GUARDRAILS[:1])
    assert estimate is not None
    compare = CompareMeans(DescrStatsW(values[moved]), DescrStatsW(values[~moved]))
    low, high = compare.zconfint_diff(alpha=0.05, usevar="unequal")
    sd = values.std(ddof=1)
    assert estimate.share == pytest.approx((values[moved].mean() - values[~moved].mean()) / sd)
    assert (estimate.ci_low, estimate.ci_high) == pytest.approx((low / sd, high / sd), rel=1e-6)
    assert (estimate.moved_users, estimate.staying_users) == (moved.sum(), (~moved).sum())


def test_a_metric_where_lower_is_worse_counts_a_fall_as_disruption() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(0.3, 0.4, 2000)
    moved = rng.random(2000) < 0.5
    values[moved] -= 0.2
    estimate = estimate_disruption(
        pd.DataFrame({"feedback_score": values}), moved, [Guardrail("feedback_score", 0.05)]
    )
    assert estimate is not None and estimate.ci_low > 0


@pytest.mark.parametrize("planted", [0.0, 0.4])
def test_the_pooled_estimate_finds_a_planted_share_and_stays_quiet_without_one(
    planted: float,
) -> None:
    """Disrupted users' metrics worse by one SD: the 95% interval covers the planted share in
    about 95% of seeded runs."""
    rng = np.random.default_rng(3)
    covered = 0
    runs = 300
    for _ in range(runs):
        n = 1500
        moved = rng.random(n) < 0.4
        disrupted = moved & (rng.random(n) < planted)
        metrics = pd.DataFrame(
            {
                "complaint_rate": rng.normal(0.1, 0.05, n) + disrupted * 0.05,
                "retry_rate": rng.normal(0.2, 0.1, n) + disrupted * 0.1,
            }
        )
        metrics.loc[rng.random(n) < 0.2, "retry_rate"] = np.nan  # not every user has both
        estimate = estimate_disruption(metrics, moved, GUARDRAILS)
        assert estimate is not None
        covered += estimate.ci_low <= planted <= estimate.ci_high
    # The shock widens the metric's spread a little, so the planted share reads a bit low.
    assert covered / runs >= 0.85 if planted else covered / runs == pytest.approx(0.95, abs=0.04)


def test_no_estimate_without_two_users_in_each_arm() -> None:
    metrics = pd.DataFrame({"complaint_rate": [0.1, 0.2, np.nan, 0.3]})
    moved = np.array([True, False, False, False])
    assert estimate_disruption(metrics, moved, GUARDRAILS[:1]) is None
