"""The rollback planner: strategies, power-based holds, expected harm, and its GrowthBook rules
evaluated by the official SDK."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from growthbook import GrowthBook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from rollout.growthbook.rules import is_rolled_back
from rollout.planner import (
    COHORT_ORDER,
    CohortStats,
    Plan,
    Policy,
    Stage,
    choose,
    expected_disrupted,
    plan_document,
    plan_hold,
    plan_rollback,
)
from tests.factories import make_users

FEATURE = "chat-model"
NOW = datetime(2026, 11, 16, tzinfo=UTC)


def make_plan(users: pd.DataFrame, policy: Policy | None = None) -> Plan:
    return plan_rollback(
        users,
        experiment_id="exp",
        feature_key=FEATURE,
        policy=policy or Policy(),
        rollback_value="old",
        current_value="new",
        as_of=NOW,
        created_at=NOW,
    )


def served(payload: dict, users: list[str]) -> dict[str, str]:
    values = {}
    for user in users:
        gb = GrowthBook(
            attributes={"id": user},
            features=payload["features"],
            saved_groups=payload["savedGroups"],
        )
        values[user] = gb.get_feature_value(FEATURE, "unset")
        gb.destroy()
    return values


def planned_value(plan: Plan, stage: Stage, cohort_of: dict[str, str], user: str) -> str:
    """What the plan says ``user`` gets after ``stage``, from GrowthBook's hash."""
    cohort = cohort_of.get(user)
    if cohort is None:  # a user the plan does not know: new to the experiment
        froze = any(s.kind == "freeze" and s.index <= stage.index for s in plan.chosen().stages)
        cohort_blind = plan.strategy != "adaptation_aware"
        if cohort_blind:
            cohort, coverage = "all", stage.rollback.get("all", 0.0)
            return "old" if is_rolled_back(FEATURE, user, coverage) else "new"
        return "old" if froze else "new"
    if plan.strategy != "adaptation_aware":
        cohort = "all"
    if is_rolled_back(FEATURE, user, stage.rollback.get(cohort, 0.0)):
        return "old"
    if is_rolled_back(FEATURE, user, stage.bridge.get(cohort, 0.0)):
        return "bridge"
    return "new"


def test_the_three_strategies_cover_every_treated_user() -> None:
    users = make_users()
    plan = make_plan(users)
    options = {o.strategy: o for o in plan.options}
    assert set(options) == {"immediate", "uniform_ramp", "adaptation_aware"}
    immediate = options["immediate"]
    assert len(immediate.stages) == 1 and immediate.duration_days == 0
    assert immediate.expected_disrupted_users == pytest.approx(users["risk"].sum())
    ramp = options["uniform_ramp"]
    assert [s.coverage for s in ramp.stages] == [0.01, 0.05, 0.10, 0.25, 0.5, 1.0]
    aware = options["adaptation_aware"]
    assert aware.stages[0].kind == "freeze" and aware.stages[0].users == 0
    for option in options.values():
        assert sum(s.users for s in option.stages) == len(users)
    # Cohorts in order, least adapted first, each finished before the next starts.
    # Cohorts start least adapted first; a cohort's share never passes a less adapted one's.
    order = [s.cohort for s in aware.stages[1:]]
    starts = list(dict.fromkeys(order))
    assert starts == [c for c in COHORT_ORDER if c in starts]
    for stage in aware.stages:
        shares = [stage.rollback.get(c, 0.0) for c in COHORT_ORDER]
        assert shares == sorted(shares, reverse=True)
    assert all(aware.stages[-1].rollback[c] == 1.0 for c in starts)
    # Adapted users go in small steps.
    assert next(s.coverage for s in aware.stages if s.cohort == "adapted") <= 0.05
    assert all(
        b.coverage - a.coverage <= 0.5 + 1e-9
        for a, b in zip(aware.stages[1:], aware.stages[2:], strict=False)
        if a.cohort == b.cohort
    )


def test_the_recommendation_expects_the_fewest_disruptions_and_says_why() -> None:
    plan = make_plan(make_users())
    best = min(plan.options, key=lambda o: o.expected_disrupted_users)
    assert plan.strategy == best.strategy
    expected = {o.strategy: o.expected_disrupted_users for o in plan.options}
    assert max(expected.values()) == expected["immediate"]
    for option in plan.options:
        assert f"{option.expected_disrupted_users:,.0f}" in plan.reason
        assert f"{option.duration_days:.1f} days" in plan.reason


def test_hold_matches_the_closed_form_sample_size() -> None:
    # One-sided z-test, unequal arms: n1 = (z_{1-a} + z_{power})^2 (1 + 1/k) / d^2, k = n2/n1.
    stats = CohortStats(
        users=4000,
        daily_active=0.3,
        metric_sd={"complaint_rate": 0.1},
        mean_risk=0.5,
    )
    policy = Policy(guardrails=(Policy().guardrails[0],), min_hold_hours=0)
    coverage = 0.2
    hours, power, under, required = plan_hold(stats, stats, coverage, policy)
    d = 0.02 / 0.1
    k = (1 - coverage) / coverage
    n1 = (norm.ppf(1 - policy.alpha) + norm.ppf(policy.power)) ** 2 * (1 + 1 / k) / d**2
    days = math.log(1 - n1 / (4000 * coverage)) / math.log(1 - 0.3)
    assert hours == pytest.approx(days * 24, rel=0.01)
    assert power == pytest.approx(policy.power, abs=0.01) and not under
    # The guardrail waits for the planned sample, less a tenth for the randomness of who shows up.
    assert required == pytest.approx(0.9 * n1, abs=2)


def test_a_cohort_too_small_for_the_power_target_holds_longest_and_says_so() -> None:
    stats = CohortStats(
        users=40, daily_active=0.3, metric_sd={"complaint_rate": 0.1}, mean_risk=0.5
    )
    policy = Policy(guardrails=(Policy().guardrails[0],))
    hours, power, under, required = plan_hold(stats, stats, 0.1, policy)
    assert hours == policy.max_hold_hours and under and power is not None and power < 0.8
    assert required <= 40 * 0.1  # waits for what the hold can bring, not for the impossible
    assert plan_hold(stats, stats, 1.0, policy) == (policy.min_hold_hours, None, False, 0)


def test_expected_disruptions_spare_the_stages_after_a_catch() -> None:
    def stage(risk: float, detect: float) -> Stage:
        return Stage(0, "c", "rollback", 0.5, 10, 24, 0.8, 5, detect, risk, False, {}, {})

    stages = [stage(2.0, 0.5), stage(10.0, 0.9), stage(30.0, 0.0)]
    # 2 + (1 - .5) * 10 + (1 - .5)(1 - .9) * 30
    assert expected_disrupted(stages) == pytest.approx(2 + 5 + 1.5)


def test_a_deadline_shortens_holds_and_warns() -> None:
    users = make_users()
    relaxed = {o.strategy: o for o in make_plan(users).options}
    rushed = {o.strategy: o for o in make_plan(users, Policy(deadline_days=3)).options}
    assert rushed["adaptation_aware"].duration_days <= 3 + 1e-6
    assert relaxed["adaptation_aware"].duration_days > 3
    assert any("deadline" in w for w in rushed["adaptation_aware"].warnings)
    # Less time to look means more harm gets through before a guardrail can see it.
    assert (
        rushed["adaptation_aware"].expected_disrupted_users
        >= relaxed["adaptation_aware"].expected_disrupted_users
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("alpha", 0.0), ("power", 1.0), ("max_step_share", 0.0), ("deadline_days", -1.0)],
)
def test_policy_rejects_values_out_of_range(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Policy(**{field: value})


@pytest.mark.slow
def test_every_stage_serves_exactly_the_planned_users_with_the_sdk() -> None:
    users = make_users(n=10_000, seed=2)
    plan = make_plan(users, Policy(bridge_value="bridge"))
    outsiders = [f"new-user-{i}" for i in range(300)]
    for strategy in ("adaptation_aware", "uniform_ramp", "immediate"):
        chosen = choose(plan, strategy)
        document = plan_document(chosen)
        cohort_of = {u: c for c, members in chosen.members.items() for u in members}
        everyone = list(cohort_of) + outsiders
        before: dict[str, str] = {}
        for stage, stage_doc in zip(chosen.chosen().stages, document["stages"], strict=True):
            got = served(stage_doc["growthbook"], everyone)
            want = {u: planned_value(chosen, stage, cohort_of, u) for u in everyone}
            assert got == want, (strategy, stage.index)
            # Nested: nobody rolled back goes back to the new model or the bridge.
            assert all(got[u] == "old" for u, v in before.items() if v == "old")
            moved = sum(
                1 for u in cohort_of if got[u] != before.get(u, "new") and stage.kind != "freeze"
            )
            assert moved == stage.users, (strategy, stage.index)
            before = got
        assert all(before[u] == "old" for u in cohort_of)  # all treated users rolled back


labels = st.sampled_from(["unadapted", "partial", "adapted"])


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    user=st.integers(0, 199),
    new_label=labels,
)
def test_more_adaptation_never_means_an_earlier_stage(seed: int, user: int, new_label: str) -> None:
    rng = np.random.default_rng(seed)
    # Every label at least twice, so moving one user empties no cohort.
    base = ["unadapted", "partial", "adapted"] * 2
    label_list = base + list(rng.choice(["unadapted", "partial", "adapted"], 194).astype(str))
    users = make_users(labels=label_list, seed=seed)
    rank = {label: i for i, label in enumerate(["unadapted", "partial", "adapted"])}
    old_label = label_list[user]
    if rank[new_label] < rank[old_label]:
        old_label, new_label = new_label, old_label
        users.loc[user, "adaptation_label"] = old_label
    before = _stage_of(make_plan(users), users.loc[user, "user_id"])
    users.loc[user, "adaptation_label"] = new_label
    after = _stage_of(make_plan(users), users.loc[user, "user_id"])
    assert after >= before


def _stage_of(plan: Plan, user: str) -> int:
    chosen = choose(plan, "adaptation_aware")
    cohort = next(c for c, members in chosen.members.items() if user in members)
    for stage in chosen.chosen().stages:
        if is_rolled_back(FEATURE, user, stage.rollback.get(cohort, 0.0)):
            return stage.index
    raise AssertionError("never rolled back")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), share=st.floats(0.1, 1.0))
def test_steps_are_nested_and_end_with_everyone_rolled_back(seed: int, share: float) -> None:
    plan = make_plan(make_users(n=300, seed=seed), Policy(max_step_share=share))
    for option in plan.options:
        for earlier, later in zip(option.stages, option.stages[1:], strict=False):
            for cohort, coverage in earlier.rollback.items():
                assert later.rollback.get(cohort, 0.0) >= coverage
        last = option.stages[-1]
        cohorts = {"all"} if option.strategy != "adaptation_aware" else set(plan.members)
        assert all(last.rollback.get(c) == 1.0 for c in cohorts)
        assert sum(s.users for s in option.stages) == 300
