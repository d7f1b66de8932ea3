"""The rollback planner: strategies, power-based holds, expected harm, and its GrowthBook rules
evaluated by the official SDK."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from growthbook import GrowthBook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollout.growthbook.rules import is_rolled_back
from rollout.planner import Plan, Policy, choose, plan_document, plan_rollback, stage_documents
from rollout.search import Stage
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


def test_every_option_covers_every_treated_user_in_whole_users_and_days_that_add_up() -> None:
    users = make_users()
    plan = make_plan(users)
    strategies = {o.strategy for o in plan.options}
    assert strategies == {"immediate", "uniform_ramp", "adaptation_aware"}
    assert len(plan.options) > 10
    assert sum(o.recommended for o in plan.options) == 1
    for option in plan.options:
        moves = [s for s in option.stages if s.kind != "freeze"]
        # Every user leaves the current value exactly once (bridge moves are a second move).
        exits = {}
        for stage in moves:
            exits[stage.cohort] = stage.cumulative_users
        assert sum(exits.values()) == len(users), option.name
        for a, b in zip(option.stages, option.stages[1:], strict=False):
            assert b.start_day == pytest.approx(a.start_day + a.min_hold_hours / 24.0)
            assert isinstance(a.min_hold_hours, int)
        assert option.duration_days == pytest.approx(option.stages[-1].start_day)
        for stage in moves:
            if stage.cohort == "all":
                assert stage.cumulative_coverage == stage.coverage
    immediate = next(o for o in plan.options if o.strategy == "immediate")
    risk = immediate.harms.second_disruptions
    assert risk == pytest.approx(_brute_force(plan, immediate, users)[0])


def _brute_force(plan: Plan, option, users: pd.DataFrame) -> tuple[float, float]:
    """Expected second disruptions and exposed user-days by the harm model's definition,
    user by user and stage by stage (rollout.harm's docstring)."""
    policy = plan.policy
    cohort_of = {u: c for c, members in plan.members.items() for u in members}
    row = dict(zip(users["user_id"], users.itertuples(), strict=True))
    half_life = 3.0
    reach, left, disruptions, exposure = 1.0, {}, 0.0, 0.0
    for stage in option.stages:
        if stage.kind == "freeze":
            continue
        for user, cohort in cohort_of.items():
            if stage.cohort not in ("all", cohort) or user in left:
                continue
            if not is_rolled_back(FEATURE, user, stage.coverage):
                continue
            r = row[user]
            saturation = 1 - 2 ** (-(r.days_exposed + stage.start_day) / half_life)
            factor = 0.5 + 0.5 * r.n_post / (r.n_post + 10.0)
            risk = min(1.0, r.evidence * saturation * factor)
            share = 0.5 if stage.kind == "bridge" else 1.0
            disruptions += reach * share * risk
            exposure += r.daily_active * (
                reach * stage.start_day + (1 - reach) * max(policy.deadline_days, stage.start_day)
            )
            left[user] = stage.start_day
        reach *= 1 - stage.detect_probability
    return disruptions, exposure


@pytest.mark.parametrize("strategy", ["uniform_ramp", "adaptation_aware"])
def test_expected_harms_match_a_user_by_user_brute_force(strategy: str) -> None:
    users = make_users(n=600, seed=4)
    plan = choose(make_plan(users), strategy)
    option = plan.chosen()
    disruptions, exposure = _brute_force(plan, option, users)
    assert option.harms.second_disruptions == pytest.approx(disruptions, rel=1e-6)
    assert option.harms.exposed_user_days == pytest.approx(exposure, rel=1e-6)
    assert option.combined_cost == pytest.approx(
        disruptions + exposure / plan.policy.exposure_day_cost, rel=1e-6
    )


@pytest.mark.parametrize("exposure_day_cost", [25.0, 400.0])
def test_the_recommendation_is_the_lowest_combined_cost_on_the_pareto_front_and_says_why(
    exposure_day_cost: float,
) -> None:
    plan = make_plan(make_users(), Policy(exposure_day_cost=exposure_day_cost))
    fits = [o for o in plan.options if o.fits_deadline]
    best = plan.chosen()
    assert best.recommended and best.combined_cost == min(o.combined_cost for o in fits)
    # The front: no option is lower on both harms; every other option is beaten by one on it.
    front = [o for o in plan.options if o.pareto]
    assert best in front
    for option in plan.options:
        d, x = option.harms.second_disruptions, option.harms.exposed_user_days
        beaten = [
            o
            for o in plan.options
            if o.harms.second_disruptions <= d
            and o.harms.exposed_user_days <= x
            and (o.harms.second_disruptions, o.harms.exposed_user_days) != (d, x)
        ]
        assert option.pareto == (not beaten), option.name
    immediate = next(o for o in plan.options if o.strategy == "immediate")
    fewer = immediate.harms.second_disruptions - best.harms.second_disruptions
    if exposure_day_cost > 100:  # exposure cheap: a staged rollback, and what it trades
        assert best.strategy != "immediate"
        more = best.harms.exposed_user_days - immediate.harms.exposed_user_days
        assert f"{fewer:,.0f} fewer second disruptions" in plan.reason
        assert f"{more:,.0f} more exposed user-days" in plan.reason
    else:
        assert plan.reason.startswith("Roll everyone back at once")
    assert f"{exposure_day_cost:g} exposed user-days count as one second disruption" in plan.reason


def test_a_higher_exchange_rate_never_moves_users_faster() -> None:
    users = make_users()
    costs = [make_plan(users, Policy(exposure_day_cost=k)).chosen() for k in (1, 25, 1000)]
    exposure = [o.harms.exposed_user_days for o in costs]
    assert exposure == sorted(exposure)
    assert costs[0].strategy == "immediate"  # exposure dear: everyone at once


def test_the_deadline_is_compared_in_whole_hours() -> None:
    users = make_users()
    plan = make_plan(users)
    staged = next(o for o in plan.options if o.duration_days > 2 and o.strategy != "immediate")
    days = staged.duration_days
    # A deadline a few seconds short of the duration still admits it; an hour short does not.
    near = make_plan(users, Policy(deadline_days=days - 10 / 86400))
    assert next(o for o in near.options if o.name == staged.name).fits_deadline
    short = make_plan(users, Policy(deadline_days=days - 1 / 24))
    assert not next(o for o in short.options if o.name == staged.name).fits_deadline
    assert all(o.fits_deadline or not o.recommended for o in short.options)


def test_stage_documents_carry_cumulative_coverage_and_detectable_regressions() -> None:
    users = make_users(n=20_000, seed=3)
    plan = choose(make_plan(users), "adaptation_aware")
    document = plan_document(plan)
    stages = document["stages"]
    assert all(
        isinstance(s["users"], int) and isinstance(s["cumulative_users"], int) for s in stages
    )
    by_cohort: dict[str, list[dict]] = {}
    for stage in stages:
        by_cohort.setdefault(stage["cohort"], []).append(stage)
    for cohort, rows in by_cohort.items():
        covered = [r["cumulative_coverage"] for r in rows]
        assert covered == sorted(covered)
        if cohort != "unexposed":
            assert rows[-1]["cumulative_users"] == len(plan.members[cohort])
    partial = [s for s in stages if s["kind"] != "freeze" and s["coverage"] < 1]
    assert partial, "20,000 users leave room for guarded steps"
    for stage in partial:
        for guardrail in stage["guardrails"]:
            mdr = guardrail["min_detectable_regression"]
            assert mdr is not None and mdr > 0
            assert (mdr <= guardrail["max_regression"] * (1 + 1e-6)) == (
                not stage["underpowered"]
            ) or (stage["underpowered"])
    full = [s for s in stages if s["coverage"] >= 1]
    assert all(g["min_detectable_regression"] is None for s in full for g in s["guardrails"])
    option = next(o for o in document["options"] if o["name"] == document["option"])
    for key in (
        "expected_second_disruptions",
        "expected_disrupted_users",
        "exposed_user_days",
        "expected_new_adapters",
        "combined_cost",
        "duration_days",
        "recommended",
    ):
        assert key in option
    assert option["expected_disrupted_users"] == option["expected_second_disruptions"]
    assert document["policy"]["exposure_day_cost"] == 25.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("alpha", 0.0),
        ("power", 1.0),
        ("max_step_share", 0.0),
        ("deadline_days", -1.0),
        ("exposure_day_cost", 0.0),
    ],
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


def test_a_step_share_cap_leaves_everyone_at_once_as_a_reference_only() -> None:
    plan = make_plan(make_users(n=1500, seed=6), Policy(max_step_share=0.5, exposure_day_cost=1))
    immediate = next(o for o in plan.options if o.strategy == "immediate")
    assert any("shown for comparison only" in w for w in immediate.warnings)
    assert not immediate.recommended
    for option in plan.options:
        if option.strategy == "immediate":
            continue
        last: dict[tuple[str, str], float] = {}
        for stage in option.stages:
            if stage.kind == "freeze":
                continue
            key = (stage.cohort, stage.kind)
            assert stage.coverage - last.get(key, 0.0) <= 0.5 + 1e-9, option.name
            last[key] = stage.coverage


def test_stages_planned_again_keep_users_new_to_the_experiment_frozen() -> None:
    plan = choose(make_plan(make_users(n=300, seed=7)), "immediate")
    [again] = stage_documents(plan, first_index=4, froze=True)
    assert again["index"] == 4
    described = [r["description"] for r in again["rest"]["rules"]]
    assert any(d.endswith("stage 4, unexposed freeze") for d in described)
    [first] = stage_documents(plan)
    assert not any("freeze" in r["description"] for r in first["rest"]["rules"])
