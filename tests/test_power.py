"""What a stage's guardrail can see (rollout.power), checked against the guardrails' own
confidence sequence, normal theory and seeded simulations of the test the ramp runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from analytics.inference.sequential import confidence_sequence, sequential_halfwidth
from analytics.inference.sufficient import SampleStats
from rollout.guardrails import GUARDRAIL_TUNING, Guardrail
from rollout.power import CohortPower, PowerModel, boundary

GUARDRAIL = Guardrail("complaint_rate", 0.02)


def model(users: int, activity: float = 0.4, sd: float = 0.1, **policy: float) -> PowerModel:
    cohort = CohortPower(users, np.full(20, activity), {"complaint_rate": sd})
    levels = {"alpha": 0.05, "power": 0.8, "min_hold_hours": 24.0, "max_hold_hours": 168.0}
    return PowerModel(cohort, [GUARDRAIL], **{**levels, **policy})


@pytest.mark.parametrize("n", [10, 300, 1000, 5000, 100_000])
@pytest.mark.parametrize("alpha", [0.0125, 0.05])
def test_the_boundary_is_the_sequences_half_width_in_standard_errors(n: int, alpha: float) -> None:
    expected = sequential_halfwidth(1.0, n, alpha, GUARDRAIL_TUNING)
    assert float(boundary(n, alpha)[()]) == pytest.approx(expected, rel=1e-12)


def test_active_share_is_the_mean_chance_of_a_visit() -> None:
    cohort = CohortPower(100, np.array([0.1, 0.5] * 10), {})
    days = np.array([0.0, 1.0, 3.5])
    want = [np.mean([1 - (1 - a) ** t for a in (0.1, 0.5)]) for t in days]
    assert cohort.active_share(days) == pytest.approx(want)


def test_the_smallest_guardable_step_solves_the_power_equation() -> None:
    power = model(5000)
    share = power.smallest_guardable()
    assert share is not None and 0 < share < 0.5
    active = 5000 * (1 - 0.6**7)  # a week at 40% a day
    m = float(boundary(active, 0.05)[()])
    z = norm.ppf(0.8)
    mde = lambda c: (m + z) / math.sqrt(active * c * (1 - c))  # noqa: E731
    assert mde(share) <= 0.2 + 1e-9  # the tolerated 0.02 over an SD of 0.1
    assert mde(share - 0.002) > 0.2  # rounded up to 0.1%, no further
    stage = power.stage(share)
    assert stage.can_see and stage.hold_hours <= 168
    assert power.stage(share / 2).can_see is False


def test_a_cohort_too_small_for_any_guarded_step_says_so() -> None:
    power = model(120)
    assert power.smallest_guardable() is None
    stage = power.stage(0.5)
    assert not stage.can_see and stage.hold_hours == 168
    assert stage.min_detectable(0.1) > 0.02  # what it can see is shown, and it is more


def test_a_full_step_has_no_test_and_the_shortest_hold() -> None:
    stage = model(5000).stage(1.0)
    assert stage.hold_hours == 24 and stage.power == 0.0 and stage.min_detectable(0.1) is None


@pytest.mark.parametrize(("users", "share"), [(4000, 0.2), (20_000, 0.05)])
def test_the_planned_power_is_what_the_guardrail_sequence_achieves(
    users: int, share: float
) -> None:
    """Seeded simulation of the test the ramp runs at the end of the hold: with the arm
    worse by the planned smallest detectable regression the sequence catches it about 80%
    of the time; with no regression it (almost) never does."""
    power = model(users)
    stage = power.stage(share)
    rng = np.random.default_rng(5)
    moved_n, staying_n = round(stage.moved_active), round(stage.staying_active)
    caught = {0.0: 0, stage.mde: 0}
    runs = 400
    for shift in caught:
        for _ in range(runs):
            moved = rng.normal(shift, 1.0, moved_n)
            staying = rng.normal(0.0, 1.0, staying_n)
            result = confidence_sequence(
                SampleStats.from_values(staying),
                SampleStats.from_values(moved),
                0.05,
                tuning=GUARDRAIL_TUNING,
            )
            caught[shift] += bool(result.ci_low is not None and result.ci_low > 0)
    assert caught[stage.mde] / runs == pytest.approx(0.8, abs=0.06)
    assert caught[0.0] / runs <= 0.01
    assert power.detect(share, stage.mde, stage.hold_hours) == pytest.approx(0.8, abs=1e-6)
