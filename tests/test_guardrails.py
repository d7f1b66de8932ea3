"""Stage decisions: planted regressions pause, null stages advance, and the false-pause rate
stays at most alpha however often a stage is checked."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analytics.analysis.outcomes import OUTCOME_COLUMNS
from analytics.errors import ConfigError
from rollout.growthbook.rules import is_rolled_back
from rollout.guardrails import (
    Guardrail,
    GuardrailCheck,
    GuardrailDecision,
    GuardrailParams,
    assign_arms,
    decide_stage,
)

FEATURE = "chat-model"
COVERAGE = 0.3
START = datetime(2026, 11, 2, tzinfo=UTC)
HOLD_UNTIL = START + timedelta(days=3)
LATER = START + timedelta(days=5)
GUARDRAILS = (
    Guardrail("complaint_rate", 0.02),
    Guardrail("retry_rate", 0.03),
    Guardrail("feedback_score", 0.1),
    Guardrail("pushback_rate", 0.05),
)


@dataclass(frozen=True)
class Arm:
    """Per-interaction outcome rates of one arm."""

    complaint: float = 0.05
    retry: float = 0.10
    thumbs_up: float = 0.30
    thumbs_down: float = 0.10
    pushback: float = 0.20


def simulate_outcomes(
    rng: np.random.Generator,
    rolled_back: np.ndarray,
    *,
    treated: Arm = Arm(),
    control: Arm = Arm(),
    active_share: float = 0.7,
) -> pd.DataFrame:
    """An outcome frame as load_user_outcomes returns it, one row per user.

    Users differ in activity and in their own rates (a Beta around the arm's rate), and
    some outcome values are missing, as in the logs.
    """
    size = rolled_back.size
    n = np.where(rng.random(size) < active_share, rng.poisson(3.5, size) + 1, 0)

    def arm_rate(name: str) -> np.ndarray:
        mean = np.where(rolled_back, getattr(treated, name), getattr(control, name))
        return rng.beta(20 * mean, 20 * (1 - mean))  # users differ; the arm mean stays

    complaint_n = rng.binomial(n, 0.9)
    retry_n = rng.binomial(n, 0.95)
    feedback_n = rng.binomial(n, 0.5)
    up = rng.binomial(feedback_n, arm_rate("thumbs_up"))
    down_share = np.clip(arm_rate("thumbs_down") / (1 - arm_rate("thumbs_up")), 0, 1)
    down = rng.binomial(feedback_n - up, down_share)
    return pd.DataFrame(
        {
            "user_id": [f"user-{i:05d}" for i in range(size)],
            "n": n,
            "active_days": np.minimum(n, 3),
            "complaint_n": complaint_n,
            "complaint_sum": rng.binomial(complaint_n, arm_rate("complaint")),
            "retry_n": retry_n,
            "retry_sum": rng.binomial(retry_n, arm_rate("retry")),
            "feedback_n": feedback_n,
            "feedback_sum": up - down,
            "pushback_sum": rng.binomial(n, arm_rate("pushback")),
        }
    )[list(OUTCOME_COLUMNS)]


def cohort_arms(size: int) -> np.ndarray:
    """Who is rolled back among ``size`` users (named as simulate_outcomes names them)."""
    return assign_arms([f"user-{i:05d}" for i in range(size)], FEATURE, COVERAGE)


def decide(
    outcomes: pd.DataFrame,
    arms: np.ndarray,
    now: datetime = LATER,
    *,
    coverage: float = COVERAGE,
    guardrails: tuple[Guardrail, ...] = GUARDRAILS,
) -> GuardrailDecision:
    return decide_stage(
        outcomes, arms, coverage=coverage, guardrails=guardrails, hold_until=HOLD_UNTIL, now=now
    )


def check_of(decision: GuardrailDecision, metric: str) -> GuardrailCheck:
    return next(c for c in decision.checks if c.metric == metric)


# --- assignment ------------------------------------------------------------------------------


def test_assign_arms_is_the_growthbook_hash_and_splits_at_coverage() -> None:
    users = [f"id-{i}" for i in range(10_000)]
    arms = assign_arms(users, FEATURE, COVERAGE)
    assert arms.dtype == bool and arms.shape == (10_000,)
    assert all(arms[i] == is_rolled_back(FEATURE, u, COVERAGE) for i, u in enumerate(users))
    # Within four binomial standard errors (0.018) of the coverage.
    assert abs(arms.mean() - COVERAGE) < 4 * np.sqrt(COVERAGE * (1 - COVERAGE) / 10_000)
    # A fixed seed per cohort nests the steps: whoever is rolled back at 10% is at 30% too.
    earlier = assign_arms(users, FEATURE, 0.1)
    assert not np.any(earlier & ~arms)
    assert assign_arms(users[:5], FEATURE, 1.0).all()
    assert not assign_arms(users[:5], FEATURE, 0.0).any()


# --- decisions -------------------------------------------------------------------------------


def test_planted_complaint_regression_pauses_and_names_the_metric() -> None:
    arms = cohort_arms(4000)
    outcomes = simulate_outcomes(
        np.random.default_rng(1), arms, treated=Arm(complaint=0.12), control=Arm(complaint=0.05)
    )
    # Before the hold ends: a significant regression pauses at once (the interval is valid
    # at any look).
    decision = decide(outcomes, arms, now=START + timedelta(days=1))
    assert decision.action == "pause"
    complaint = check_of(decision, "complaint_rate")
    assert complaint.status == "regression"
    assert complaint.harm > 0 and complaint.ci_low > 0
    assert any(r.startswith("complaint_rate regressed") for r in decision.reasons)
    assert all("retry_rate" not in r for r in decision.reasons)
    assert decision.srm.ok


def test_null_stage_advances_once_the_hold_has_passed() -> None:
    arms = cohort_arms(6000)
    outcomes = simulate_outcomes(np.random.default_rng(2), arms)
    decision = decide(outcomes, arms)
    assert decision.action == "advance", decision.reasons
    assert [c.status for c in decision.checks] == ["cleared"] * 4
    for check in decision.checks:
        assert check.ci_low is not None and check.ci_high is not None
        assert check.ci_low < 0 < check.ci_high < check.max_regression
        assert check.rolled_back_users > 30 and check.not_rolled_back_users > 30
    assert decision.alpha_per_guardrail == pytest.approx(0.05 / 4)
    active = outcomes["n"].to_numpy() > 0
    assert decision.rolled_back_active_users == int((active & arms).sum())
    assert decision.not_rolled_back_active_users == int((active & ~arms).sum())
    assert decision.reasons[0] == "Every guardrail cleared and the hold has ended."


def test_null_stage_holds_before_hold_until() -> None:
    arms = cohort_arms(6000)
    outcomes = simulate_outcomes(np.random.default_rng(2), arms)
    decision = decide(outcomes, arms, now=HOLD_UNTIL - timedelta(seconds=1))
    assert decision.action == "hold"
    assert decision.reasons == (f"The stage's minimum hold runs until {HOLD_UNTIL.isoformat()}.",)
    # The hold ends exactly at hold_until; naive times are UTC.
    assert decide(outcomes, arms, now=HOLD_UNTIL.replace(tzinfo=None)).action == "advance"


def test_too_few_active_users_hold() -> None:
    arms = cohort_arms(60)
    outcomes = simulate_outcomes(np.random.default_rng(3), arms)
    decision = decide(outcomes, arms)
    assert decision.action == "hold"
    assert decision.rolled_back_active_users < 30
    assert any(
        r.startswith(f"Only {decision.rolled_back_active_users} rolled-back")
        for r in decision.reasons
    )


def test_uncleared_guardrail_holds_with_its_interval() -> None:
    # Enough users for the minimum, too few to rule out a 0.02 rise in complaints.
    arms = cohort_arms(400)
    outcomes = simulate_outcomes(np.random.default_rng(4), arms)
    decision = decide(outcomes, arms)
    assert decision.action == "hold"
    complaint = check_of(decision, "complaint_rate")
    assert complaint.status == "inconclusive"
    assert complaint.ci_high >= 0.02
    assert any(r.startswith("complaint_rate is not cleared yet") for r in decision.reasons)


def test_srm_skew_pauses() -> None:
    arms = cohort_arms(6000)
    outcomes = simulate_outcomes(np.random.default_rng(5), arms)
    # Half of the active rolled-back users vanish from the logs.
    active_rolled = np.flatnonzero(arms & (outcomes["n"].to_numpy() > 0))
    gone = active_rolled[::2]
    outcomes.loc[gone, list(OUTCOME_COLUMNS[1:])] = 0
    decision = decide(outcomes, arms)
    assert decision.action == "pause"
    assert not decision.srm.ok and decision.srm.p_value < 0.001
    assert any("sample-ratio mismatch" in r for r in decision.reasons)
    assert all(c.status != "regression" for c in decision.checks)


def test_feedback_score_decrease_is_harm() -> None:
    arms = cohort_arms(4000)
    worse = Arm(thumbs_up=0.15, thumbs_down=0.25)  # score 0.2 -> -0.1
    decision = decide(simulate_outcomes(np.random.default_rng(6), arms, treated=worse), arms)
    feedback = check_of(decision, "feedback_score")
    assert decision.action == "pause"
    assert feedback.rolled_back_mean < feedback.not_rolled_back_mean
    assert feedback.harm > 0 and feedback.ci_low > 0
    assert feedback.status == "regression"
    # The same change the other way round is an improvement, never a regression.
    better = decide(simulate_outcomes(np.random.default_rng(6), arms, control=worse), arms)
    feedback = check_of(better, "feedback_score")
    assert feedback.harm < 0 and feedback.ci_high < 0
    assert feedback.status == "cleared"
    assert better.action != "pause", better.reasons


def test_full_coverage_holds_then_advances_without_a_test() -> None:
    users = [f"user-{i:05d}" for i in range(500)]
    arms = assign_arms(users, FEATURE, 1.0)
    outcomes = simulate_outcomes(np.random.default_rng(7), arms, treated=Arm(complaint=0.5))
    early = decide(outcomes, arms, now=START, coverage=1.0)
    late = decide(outcomes, arms, coverage=1.0)
    assert (early.action, late.action) == ("hold", "advance")
    for decision in (early, late):
        assert "no one is left to compare against" in decision.reasons[0]
        assert all(c.status == "inconclusive" and c.harm is None for c in decision.checks)
        assert decision.srm.ok and decision.not_rolled_back_active_users == 0


def test_degenerate_metric_is_inconclusive_not_an_error() -> None:
    arms = cohort_arms(2000)
    outcomes = simulate_outcomes(np.random.default_rng(8), arms)
    outcomes["complaint_sum"] = 0  # nobody complained: no spread to bound a difference with
    decision = decide(outcomes, arms)
    complaint = check_of(decision, "complaint_rate")
    assert complaint.status == "inconclusive" and complaint.error == "zero_variance"
    assert decision.action == "hold"
    assert any(r.startswith("complaint_rate cannot be compared yet") for r in decision.reasons)


def test_decision_serialises_as_json() -> None:
    arms = cohort_arms(400)
    decision = decide(simulate_outcomes(np.random.default_rng(9), arms), arms)
    document = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert document["action"] == decision.action
    assert document["hold_until"] == "2026-11-05T00:00:00+00:00"
    assert document["active_users"] == {
        "rolled_back": decision.rolled_back_active_users,
        "not_rolled_back": decision.not_rolled_back_active_users,
    }
    assert set(document["srm"]) == {"p_value", "chi2", "ok", "df", "error"}
    assert [c["metric"] for c in document["checks"]] == [g.metric for g in GUARDRAILS]
    assert set(document["checks"][0]) == {
        "metric",
        "rolled_back_mean",
        "not_rolled_back_mean",
        "harm",
        "ci_low",
        "ci_high",
        "rolled_back_users",
        "not_rolled_back_users",
        "max_regression",
        "status",
        "error",
    }
    assert document["params"] == {
        "alpha": 0.05,
        "tuning": 1000.0,
        "srm_p_threshold": 0.001,
        "min_users_per_arm": 30,
        "min_rolled_back_users": 0,
        "require_clearance": True,
    }


def test_invalid_configuration_is_refused() -> None:
    arms = cohort_arms(100)
    outcomes = simulate_outcomes(np.random.default_rng(10), arms)
    with pytest.raises(ConfigError, match="coverage"):
        decide(outcomes, arms, coverage=0.0)
    with pytest.raises(ConfigError, match="repeat"):
        decide(outcomes, arms, guardrails=(GUARDRAILS[0], Guardrail("complaint_rate", 0.05)))
    with pytest.raises(ValueError, match="arm flags"):
        decide(outcomes, arms[:-1])
    with pytest.raises(ConfigError, match="not one of"):
        Guardrail("latency", 10.0)
    with pytest.raises(ConfigError, match="positive"):
        Guardrail("complaint_rate", -0.01)
    with pytest.raises(ConfigError, match="alpha"):
        GuardrailParams(alpha=1.5)


# --- calibration -----------------------------------------------------------------------------

RUNS = 200
PEEKS = 5


def peeked_stage(seed: int) -> list[str]:
    """One null stage looked at after each of five days: the action at each look.

    Each day a user is active with probability 0.35; outcomes add up over the days, as
    load_user_outcomes over the growing window returns them.
    """
    rng = np.random.default_rng(seed)
    arms = cohort_arms(3000)
    total: pd.DataFrame | None = None
    actions = []
    for day in range(PEEKS):
        today = simulate_outcomes(rng, arms, active_share=0.35)
        if total is None:
            total = today
        else:
            numbers = list(OUTCOME_COLUMNS[1:])
            total = total.assign(**{c: total[c] + today[c] for c in numbers})
        now = START + timedelta(days=day + 1)
        actions.append(decide(total, arms, now=now, guardrails=GUARDRAILS).action)
    return actions


@pytest.mark.slow
def test_null_stages_are_paused_at_most_alpha_of_the_time() -> None:
    # A stage is falsely paused if any of its looks pauses it: the always-valid intervals
    # (alpha / 4 each) and the SRM check (p < 0.001 at each look) together must stay at
    # most alpha = 0.05, up to the simulation's error.
    runs = [peeked_stage(1000 + seed) for seed in range(RUNS)]
    paused = sum("pause" in actions for actions in runs)
    upper = sps.binom.ppf(0.975, RUNS, 0.05)
    assert paused <= upper, f"{paused} of {RUNS} null stages were paused"
    # And the stages do get decided: most advance by the last look.
    assert sum(actions[-1] == "advance" for actions in runs) > 0.5 * RUNS


def test_params_are_frozen() -> None:
    params = GuardrailParams()
    assert replace(params, tuning=5000.0).tuning == 5000.0
    with pytest.raises(AttributeError):
        params.alpha = 0.1  # type: ignore[misc]
