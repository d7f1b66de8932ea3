"""Staged rollback plans: from an analysis and a policy to stages, holds and expected harm.

Pure: every input comes in as arguments (one row per treated user, already scored by
rollout.risk and carrying its recent activity), nothing is read or written.

Three strategies are built on the same users and compared:

- ``immediate``: everyone back to the old model at once.
- ``uniform_ramp``: cohort-blind steps like GrowthBook's ramp schedules (1, 5, 10, 25, 50,
  100% of everybody).
- ``adaptation_aware``: first stop enrolling users who never saw the new model, then the
  cohorts from least to most adapted (``COHORT_ORDER``), each through its own steps
  (``COHORT_STEPS``): few and large for unadapted users, small with long holds for adapted
  and long-tenure new users, who go through the bridge value first when the policy has one.
  A cohort starts only once the one before it is fully rolled back, so a more adapted user is
  never rolled back before a less adapted one.

**Holds.** A partial step splits its cohort at random (GrowthBook's hash) into users rolled
back and users not yet. Its minimum hold is the time until enough of the rolled-back users
have been active for a one-sided two-sample z-test at ``alpha / len(guardrails)`` to detect
each guardrail's largest tolerated regression with ``power`` (statsmodels ``NormalIndPower``),
given the cohort's observed daily activity: after ``t`` days a share ``1 - (1 - a)^t`` of the
users has been active, where ``a`` is the mean share of days a user of the cohort was active
in the analysed window. Effect sizes are the tolerated regression over the standard deviation
of per-user means in that window. A step to 100% leaves no one to compare with and holds for
``min_hold_hours``. (The stage guardrails use a confidence sequence, which needs somewhat more
data than this fixed-horizon calculation: the hold is a minimum, the guardrail decides.)

**Expected disrupted users.** A user rolled back is disrupted with probability equal to their
second-disruption risk (rollout.risk), and a disrupted user's guardrail metrics regress by the
tolerated amount, so a partial step whose rolled-back users have mean risk ``r`` shows an
effect ``r`` times the tolerated one. The guardrail after a step catches that with the
power of the same test at the step's hold; once caught, the rollback pauses and later stages
are spared:

.. math::

    E = \\sum_s R_s \\prod_{s' < s} (1 - \\pi_{s'})

with :math:`R_s` the summed risk of the users stage :math:`s` moves and :math:`\\pi_s` its
detection probability. A move through a bridge value counts half the risk at each of its two
moves: the plan does not assume the bridge is gentler than it is, only that it gives the
guardrails an earlier look.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.power import NormalIndPower

from rollout.growthbook.rules import (
    EVERYONE,
    RuleSpec,
    build_stage_payload,
    hash_bucket,
    owner_tag,
    rest_rule,
    rest_saved_group,
    saved_group_id,
)
from rollout.guardrails import Guardrail
from rollout.policy import POLICY_LIMITS, STRATEGIES, check_policy_value, policy_default
from rollout.risk import DEFAULT_HALF_LIFE_DAYS

# Rollback cohorts, least adapted first, and the adaptation labels (rollout.risk cohorts of
# ``new`` users split by tenure) each holds.
COHORT_ORDER = ("least_adapted", "partial", "adapted")
COHORT_LABELS = {
    "least_adapted": ("unadapted", "new_recent"),
    "partial": ("partial", "insufficient_data"),
    "adapted": ("adapted", "new_long"),
}
COHORT_STEPS: dict[str, tuple[float, ...]] = {
    "least_adapted": (0.5, 1.0),
    "partial": (0.25, 0.5, 1.0),
    "adapted": (0.05, 0.1, 0.25, 0.5, 1.0),
}
BRIDGED = frozenset({"partial", "adapted"})
HOLD_BACK = 0.5  # share of a cohort moved before the next cohort starts
UNIFORM_STEPS = (0.01, 0.05, 0.10, 0.25, 0.5, 1.0)
UNEXPOSED = "unexposed"  # users new to the experiment: the freeze stage

DEFAULT_GUARDRAILS = (
    Guardrail("complaint_rate", 0.02),
    Guardrail("retry_rate", 0.03),
    Guardrail("feedback_score", 0.05),
    Guardrail("pushback_rate", 0.05),
)


@dataclass(frozen=True)
class Policy:
    """What the team will tolerate and how fast they must be done."""

    guardrails: tuple[Guardrail, ...] = DEFAULT_GUARDRAILS
    alpha: float = policy_default("alpha")
    power: float = policy_default("power")
    max_step_share: float = policy_default("max_step_share")  # of a cohort, in one step
    deadline_days: float | None = policy_default("deadline_days")
    bridge_value: Any = None
    min_hold_hours: float = policy_default("min_hold_hours")  # one daily cycle at least
    max_hold_hours: float = policy_default("max_hold_hours")
    # ``new`` users exposed this long count as long-tenure (None: one adaptation half-life,
    # when the risk model puts them halfway to full adaptation).
    long_tenure_days: float | None = policy_default("long_tenure_days")

    def __post_init__(self) -> None:
        """Every field within :data:`rollout.policy.POLICY_LIMITS` (a ``ValueError`` names
        the first that is not)."""
        problems = [check_policy_value(name, getattr(self, name)) for name in POLICY_LIMITS]
        if self.min_hold_hours > self.max_hold_hours:
            problems.append(
                f"min_hold_hours: {self.min_hold_hours!r} is above max_hold_hours "
                f"({self.max_hold_hours!r})"
            )
        if not self.guardrails:
            problems.append("guardrails: at least one is needed")
        for problem in problems:
            if problem is not None:
                raise ValueError(f"policy field {problem}")


@dataclass(frozen=True)
class CohortStats:
    """What the holds and the harm model need to know of a cohort."""

    users: int
    daily_active: float  # mean share of days its users were active
    metric_sd: Mapping[str, float]  # per guardrail metric: SD of per-user means
    mean_risk: float


@dataclass(frozen=True)
class Stage:
    index: int
    cohort: str
    kind: str  # "freeze" | "rollback" | "bridge"
    coverage: float  # share of the cohort on ``kind``'s value after the stage
    users: int  # users this stage moves
    min_hold_hours: float
    power: float | None  # to detect the tolerated regression at that hold (None: no test)
    required_users: int  # active rolled-back users the test needs (0: no test)
    detect_probability: float  # of catching a disruption among the users moved so far
    risk_moved: float  # expected disruptions among the users this stage moves
    underpowered: bool
    rollback: Mapping[str, float]  # after the stage: cohort -> share on the old model
    bridge: Mapping[str, float]  # after the stage: cohort -> share on the bridge value


@dataclass(frozen=True)
class StrategyPlan:
    strategy: str
    stages: tuple[Stage, ...]
    duration_days: float  # until the last stage is applied
    expected_disrupted_users: float
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    experiment_id: str
    feature_key: str
    created_at: datetime
    as_of: datetime
    policy: Policy
    rollback_value: Any
    current_value: Any
    strategy: str  # the recommended one
    reason: str
    options: tuple[StrategyPlan, ...]
    members: Mapping[str, tuple[str, ...]]  # cohort -> user ids (treated users only)
    cohort_stats: Mapping[str, CohortStats] = field(default_factory=dict)

    def chosen(self) -> StrategyPlan:
        return next(o for o in self.options if o.strategy == self.strategy)


def assign_cohorts(users: pd.DataFrame, policy: Policy, half_life_days: float) -> pd.Series:
    """Each treated user's rollback cohort from their adaptation label and tenure."""
    tenure = policy.long_tenure_days
    long_tenure = users["days_exposed"].to_numpy() >= (half_life_days if tenure is None else tenure)
    label = users["adaptation_label"].astype(str).to_numpy()
    label = np.where(label == "new", np.where(long_tenure, "new_long", "new_recent"), label)
    cohort_of = {lab: cohort for cohort, labels in COHORT_LABELS.items() for lab in labels}
    unknown = set(label) - set(cohort_of)
    if unknown:
        raise ValueError(f"unknown adaptation labels: {sorted(unknown)}")
    return pd.Series([cohort_of[lab] for lab in label], index=users.index, name="cohort")


def summarise_cohort(users: pd.DataFrame, guardrails: Sequence[Guardrail]) -> CohortStats:
    """Size, activity, metric spread and mean risk of a set of users."""
    sd = {}
    for g in guardrails:
        values = users[g.metric].dropna()
        sd[g.metric] = float(values.std(ddof=1)) if len(values) >= 2 else math.nan
    return CohortStats(
        users=len(users),
        daily_active=float(users["daily_active"].mean()) if len(users) else 0.0,
        metric_sd=sd,
        mean_risk=float(users["risk"].mean()) if len(users) else 0.0,
    )


def _effect_sizes(stats: CohortStats, fallback: CohortStats, policy: Policy) -> list[float]:
    sizes = []
    for g in policy.guardrails:
        sd = stats.metric_sd.get(g.metric, math.nan)
        if not (math.isfinite(sd) and sd > 0):
            sd = fallback.metric_sd.get(g.metric, math.nan)
        if math.isfinite(sd) and sd > 0:
            sizes.append(g.max_regression / sd)
    return sizes


def _active_share(daily_active: float, days: float) -> float:
    return float(1.0 - (1.0 - min(max(daily_active, 0.0), 1.0)) ** days)


def _days_until_active(daily_active: float, share: float) -> float:
    if share <= 0:
        return 0.0
    if share >= 1 or daily_active <= 0:
        return math.inf
    if daily_active >= 1:
        return 1.0
    return math.log(1.0 - share) / math.log(1.0 - daily_active)


def plan_hold(
    stats: CohortStats, fallback: CohortStats, coverage: float, policy: Policy
) -> tuple[float, float | None, bool, int]:
    """Minimum hold (hours), the power reached there, whether the target power was out of
    reach within ``max_hold_hours``, and the active rolled-back users the test needs, for a
    step to ``coverage`` of a cohort."""
    if coverage >= 1.0:
        return policy.min_hold_hours, None, False, 0
    sizes = _effect_sizes(stats, fallback, policy)
    arm = stats.users * coverage
    if not sizes or arm < 2:
        return policy.max_hold_hours, 0.0, True, 0
    alpha = policy.alpha / len(policy.guardrails)
    ratio = (1.0 - coverage) / coverage
    analysis = NormalIndPower()
    needed = max(
        float(
            analysis.solve_power(
                effect_size=d, alpha=alpha, power=policy.power, ratio=ratio, alternative="larger"
            )
        )
        for d in sizes
    )
    days = _days_until_active(stats.daily_active, needed / arm)
    hours = min(max(days * 24.0, policy.min_hold_hours), policy.max_hold_hours)
    reached = _power(stats, arm, coverage, min(sizes), hours, policy)
    # What the guardrail waits for: the planned sample, or as much as the hold can bring.
    expected = arm * _active_share(stats.daily_active, hours / 24.0)
    required = math.ceil(min(needed, 0.9 * expected))
    return hours, reached, reached < policy.power - 1e-3, required


def _power(
    stats: CohortStats, arm: float, coverage: float, effect: float, hours: float, policy: Policy
) -> float:
    active = arm * _active_share(stats.daily_active, hours / 24.0)
    if active < 2 or coverage >= 1.0 or effect <= 0:
        return 0.0
    return float(
        NormalIndPower().power(
            effect_size=effect,
            nobs1=active,
            alpha=policy.alpha / len(policy.guardrails),
            ratio=(1.0 - coverage) / coverage,
            alternative="larger",
        )
    )


@dataclass(frozen=True)
class _Step:
    cohort: str
    kind: str
    coverage: float
    previous: float


def _cohort_steps(cohort: str, policy: Policy) -> tuple[float, ...]:
    """The cohort's schedule with no step larger than ``max_step_share``."""
    steps: list[float] = []
    last = 0.0
    for target in COHORT_STEPS[cohort]:
        while target - last > policy.max_step_share + 1e-12:
            last = round(last + policy.max_step_share, 6)
            steps.append(last)
        steps.append(target)
        last = target
    return tuple(steps)


def _build_stages(
    steps: Sequence[_Step],
    users: pd.DataFrame,
    stats: Mapping[str, CohortStats],
    fallback: CohortStats,
    policy: Policy,
    hold_scale: float = 1.0,
) -> tuple[Stage, ...]:
    stages = []
    rollback: dict[str, float] = {}
    bridge: dict[str, float] = {}
    for index, step in enumerate(steps):
        if step.kind == "freeze":
            stages.append(
                Stage(index, step.cohort, "freeze", 1.0, 0, 0.0, None, 0, 0.0, 0.0, False, {}, {})
            )
            continue
        members = users[users["cohort"] == step.cohort] if step.cohort != EVERYONE else users
        bucket = members["bucket"]
        moved = members[
            (bucket >= step.previous) & ((bucket < step.coverage) | (step.coverage >= 1))
        ]
        share = 0.5 if step.cohort in bridge else 1.0  # a bridged cohort moves twice
        if step.kind == "bridge":
            share = 0.5
            bridge[step.cohort] = step.coverage
        else:
            rollback[step.cohort] = step.coverage
        cohort_stats = stats[step.cohort]
        hours, power, under, needed = plan_hold(cohort_stats, fallback, step.coverage, policy)
        hours *= hold_scale
        sizes = _effect_sizes(cohort_stats, fallback, policy)
        detect = 0.0
        if sizes and step.coverage < 1.0:
            effect = share * cohort_stats.mean_risk * max(sizes)
            arm = cohort_stats.users * step.coverage
            detect = _power(cohort_stats, arm, step.coverage, effect, hours, policy)
            if hold_scale != 1.0:
                power = _power(cohort_stats, arm, step.coverage, min(sizes), hours, policy)
                under = power < policy.power - 1e-3
        stages.append(
            Stage(
                index=index,
                cohort=step.cohort,
                kind=step.kind,
                coverage=step.coverage,
                users=len(moved),
                min_hold_hours=round(hours, 2),
                power=None if power is None else round(power, 4),
                required_users=needed,
                detect_probability=round(detect, 4),
                risk_moved=float(moved["risk"].sum()) * share,
                underpowered=under,
                rollback=dict(rollback),
                bridge=dict(bridge),
            )
        )
    return tuple(stages)


def expected_disrupted(stages: Sequence[Stage]) -> float:
    """Expected users disrupted when a guardrail stops the rollback at its first catch."""
    total, undetected = 0.0, 1.0
    for stage in stages:
        total += undetected * stage.risk_moved
        undetected *= 1.0 - stage.detect_probability
    return total


def _strategy(
    name: str,
    steps: Sequence[_Step],
    users: pd.DataFrame,
    stats: Mapping[str, CohortStats],
    fallback: CohortStats,
    policy: Policy,
) -> StrategyPlan:
    stages = _build_stages(steps, users, stats, fallback, policy)
    duration = sum(s.min_hold_hours for s in stages[:-1]) / 24.0
    warnings: list[str] = []
    if policy.deadline_days is not None and duration > policy.deadline_days:
        scale = policy.deadline_days / duration
        stages = _build_stages(steps, users, stats, fallback, policy, hold_scale=scale)
        duration = sum(s.min_hold_hours for s in stages[:-1]) / 24.0
        warnings.append(
            f"holds shortened to {scale:.0%} of what the power target needs, to meet the "
            f"{policy.deadline_days:g}-day deadline"
        )
    under = [s.index for s in stages if s.underpowered]
    if under:
        warnings.append(
            f"stages {under} cannot reach {policy.power:.0%} power within their hold: "
            "their guardrails may miss the tolerated regression"
        )
    return StrategyPlan(
        name, stages, round(duration, 3), expected_disrupted(stages), tuple(warnings)
    )


def _aware_steps(users: pd.DataFrame, policy: Policy) -> list[_Step]:
    """Freeze, then the least adapted cohort all the way, then the others in two rounds:
    each up to ``HOLD_BACK`` of it, less adapted first, then each to the end.

    The riskiest half of each cohort moves only after the most adapted cohort's own small
    steps have been watched by the guardrails. Shares never exceed those of a less adapted
    cohort, and all cohorts share one hash seed, so a more adapted user is never rolled
    back before a less adapted one with the same bucket. Bridged cohorts go through the
    bridge value (both rounds) before their rollback steps.
    """
    steps = [_Step(UNEXPOSED, "freeze", 1.0, 0.0)]
    present = [c for c in COHORT_ORDER if c in set(users["cohort"])]
    bridged = [c for c in present if policy.bridge_value is not None and c in BRIDGED]
    schedule = {c: _cohort_steps(c, policy) for c in present}

    def round_of(cohort: str, kind: str, first: bool) -> list[_Step]:
        previous, out = 0.0, []
        for coverage in schedule[cohort]:
            if (coverage <= HOLD_BACK or cohort == COHORT_ORDER[0]) == first:
                out.append(_Step(cohort, kind, coverage, previous))
            previous = coverage
        return out

    for kind, cohorts in (("bridge", bridged), ("rollback", present)):
        for first in (True, False):
            for cohort in cohorts:
                steps.extend(round_of(cohort, kind, first))
    return steps


def recommend(options: Sequence[StrategyPlan], policy: Policy) -> tuple[str, str]:
    """The strategy to use and why, in a sentence a product manager understands."""
    fits = [
        o
        for o in options
        if policy.deadline_days is None or o.duration_days <= policy.deadline_days + 1e-9
    ]
    pool = fits or list(options)
    best = min(pool, key=lambda o: (round(o.expected_disrupted_users), o.duration_days))
    others = "; ".join(
        f"{_label(o.strategy)}: about {o.expected_disrupted_users:,.0f} in "
        f"{o.duration_days:.1f} days"
        for o in options
        if o is not best
    )
    reason = (
        f"{_label(best.strategy).capitalize()} is expected to disrupt about "
        f"{best.expected_disrupted_users:,.0f} users and takes {best.duration_days:.1f} days "
        f"({others})."
    )
    if not fits:
        reason += f" No strategy meets the {policy.deadline_days:g}-day deadline."
    return best.strategy, reason


def _label(strategy: str) -> str:
    return {
        "immediate": "rolling everyone back at once",
        "uniform_ramp": "a uniform ramp",
        "adaptation_aware": "rolling back by adaptation, least adapted first",
    }[strategy]


def plan_rollback(
    users: pd.DataFrame,
    *,
    experiment_id: str,
    feature_key: str,
    policy: Policy,
    rollback_value: Any,
    current_value: Any,
    as_of: datetime,
    created_at: datetime,
    half_life_days: float | None = None,
) -> Plan:
    """Build and compare the strategies for the treated ``users``.

    ``users``: one row per treated user with ``user_id``, ``adaptation_label``,
    ``days_exposed``, ``risk`` (rollout.risk.score_users), ``daily_active`` and one column per
    guardrail metric (the user's mean in the recent window; NaN without data).
    """
    if users.empty:
        raise ValueError(f"experiment {experiment_id!r} has no treated users to roll back")
    if users["user_id"].duplicated().any():
        raise ValueError("users must hold each user once")
    frame = users.copy()
    frame["cohort"] = assign_cohorts(frame, policy, half_life_days or DEFAULT_HALF_LIFE_DAYS)
    frame["bucket"] = [hash_bucket(feature_key, u) for u in frame["user_id"]]
    fallback = summarise_cohort(frame, policy.guardrails)
    stats = {
        str(c): summarise_cohort(rows, policy.guardrails) for c, rows in frame.groupby("cohort")
    }
    stats[EVERYONE] = fallback
    options = (
        _strategy(
            "immediate", [_Step(EVERYONE, "rollback", 1.0, 0.0)], frame, stats, fallback, policy
        ),
        _strategy(
            "uniform_ramp",
            [
                _Step(EVERYONE, "rollback", c, p)
                for p, c in zip((0.0, *UNIFORM_STEPS), UNIFORM_STEPS, strict=False)
            ],
            frame,
            stats,
            fallback,
            policy,
        ),
        _strategy("adaptation_aware", _aware_steps(frame, policy), frame, stats, fallback, policy),
    )
    strategy, reason = recommend(options, policy)
    members = {
        str(c): tuple(sorted(rows["user_id"].astype(str))) for c, rows in frame.groupby("cohort")
    }
    return Plan(
        experiment_id=experiment_id,
        feature_key=feature_key,
        created_at=created_at,
        as_of=as_of,
        policy=policy,
        rollback_value=rollback_value,
        current_value=current_value,
        strategy=strategy,
        reason=reason,
        options=options,
        members=members,
        cohort_stats=stats,
    )


def choose(plan: Plan, strategy: str) -> Plan:
    """The same plan with another strategy chosen (the comparison stays)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return replace(plan, strategy=strategy, reason=f"{_label(strategy).capitalize()}, as asked.")


def stage_rules(plan: Plan, stage: Stage) -> list[RuleSpec]:
    """The force rules that are live after ``stage``, first match first."""
    rules: list[RuleSpec] = []
    chosen = plan.chosen()
    froze = any(s.kind == "freeze" and s.index <= stage.index for s in chosen.stages)
    for cohort, share in stage.rollback.items():
        rules.append(RuleSpec(cohort, plan.rollback_value, share, note="rollback"))
    for cohort, share in stage.bridge.items():
        if stage.rollback.get(cohort, 0.0) < 1.0:
            rules.append(RuleSpec(cohort, plan.policy.bridge_value, share, note="bridge"))
    if froze:
        rules.append(
            RuleSpec(
                UNEXPOSED,
                plan.rollback_value,
                1.0,
                exclude_groups=tuple(saved_group_id(plan.feature_key, c) for c in plan.members),
                note="freeze",
            )
        )
    return rules


def stage_groups(plan: Plan) -> dict[str, list[str]]:
    """Every saved group a plan's rules may reference, by id, with its members."""
    return {saved_group_id(plan.feature_key, c): list(m) for c, m in plan.members.items()}


def plan_document(
    plan: Plan, *, environments: Sequence[str] = ("production",), hash_attribute: str = "id"
) -> dict[str, Any]:
    """plan.json: the data contract's shape, plus each stage's REST request bodies, the
    comparison's figures and the reason for the recommendation."""
    groups = stage_groups(plan)
    chosen = plan.chosen()
    stages = []
    for stage in chosen.stages:
        rules = stage_rules(plan, stage)
        payload = build_stage_payload(
            plan.feature_key,
            default_value=plan.current_value,
            rules=rules,
            groups=groups,
            hash_attribute=hash_attribute,
        )
        stages.append(
            {
                "index": stage.index,
                "cohort": stage.cohort,
                "kind": stage.kind,
                "coverage": stage.coverage,
                "users": stage.users,
                "min_hold_hours": stage.min_hold_hours,
                "power": stage.power,
                "required_users": stage.required_users,
                "detect_probability": stage.detect_probability,
                "expected_disrupted_users": round(stage.risk_moved, 3),
                "underpowered": stage.underpowered,
                "serving": {"rollback": dict(stage.rollback), "bridge": dict(stage.bridge)},
                "guardrails": [
                    {"metric": g.metric, "max_regression": g.max_regression}
                    for g in plan.policy.guardrails
                ],
                "growthbook": payload,
                "rest": {
                    "saved_groups": [
                        rest_saved_group(name, groups[name], hash_attribute)
                        for name in payload["savedGroups"]
                    ],
                    "rules": [
                        rest_rule(
                            plan.feature_key,
                            rule,
                            environments=environments,
                            description=f"stage {stage.index}, {rule.cohort} {rule.note}",
                            hash_attribute=hash_attribute,
                        )
                        for rule in rules
                    ],
                    "owner_tag": owner_tag(plan.feature_key),
                },
            }
        )
    return {
        "experiment_id": plan.experiment_id,
        "feature_key": plan.feature_key,
        "created_at": plan.created_at.isoformat(),
        "as_of": plan.as_of.isoformat(),
        "strategy": plan.strategy,
        "reason": plan.reason,
        "rollback_value": plan.rollback_value,
        "current_value": plan.current_value,
        "policy": policy_document(plan.policy),
        "options": [
            {
                "strategy": o.strategy,
                "stages": len(o.stages),
                "duration_days": o.duration_days,
                "expected_disrupted_users": round(o.expected_disrupted_users, 2),
                "warnings": list(o.warnings),
            }
            for o in plan.options
        ],
        "cohorts": {
            c: {
                "users": s.users,
                "mean_risk": round(s.mean_risk, 4),
                "daily_active": round(s.daily_active, 4),
            }
            for c, s in plan.cohort_stats.items()
            if c != EVERYONE
        },
        "stages": stages,
    }


def policy_document(policy: Policy) -> dict[str, Any]:
    return {
        "guardrails": [
            {"metric": g.metric, "max_regression": g.max_regression} for g in policy.guardrails
        ],
        "alpha": policy.alpha,
        "power": policy.power,
        "max_step_share": policy.max_step_share,
        "deadline_days": policy.deadline_days,
        "bridge_value": policy.bridge_value,
        "min_hold_hours": policy.min_hold_hours,
        "max_hold_hours": policy.max_hold_hours,
        "long_tenure_days": policy.long_tenure_days,
    }
