"""Staged rollback plans: from an analysis and a policy to the rollback to recommend.

Pure: every input comes in as arguments (one row per treated user, already scored by
rollout.risk and carrying its recent activity), nothing is read or written.

The planner searches the plan space (rollout.search: immediate, cohort-blind ramps and
adaptation-aware schedules, each with its holds and, when the policy has one, the bridge) and
costs every option on two harms (rollout.harm): the second disruptions of users who adapted,
when they are moved, and the active user-days everyone spends on the current, misbehaving
value until they are moved (with the users who keep adapting while they wait). The policy's
``exposure_day_cost`` is the exchange rate: that many exposed active user-days weigh as much
as one second disruption. The recommendation is the option with the lowest combined cost that
moves every user within the deadline (in whole hours); the options on the Pareto front of the
two harms are marked so a product manager can pick another trade knowingly.

Every partial step is sized so its guardrail can see the tolerated regressions within the
longest hold, with the confidence sequence the guardrails actually run (rollout.power); a
cohort too small for that leaves in one step, and each stage carries, per guardrail, the
smallest regression it can detect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

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
from rollout.harm import Adaptation
from rollout.policy import POLICY_LIMITS, STRATEGIES, check_policy_value, policy_default
from rollout.power import CohortPower, PowerModel
from rollout.risk import DEFAULT_HALF_LIFE_DAYS, activity_factor
from rollout.search import (
    COHORT_ORDER,
    COHORT_WORDS,
    UNEXPOSED,
    Option,
    Population,
    Stage,
    cost_option,
    enumerate_options,
    pareto_front,
)

# Rollback cohorts, least adapted first, and the adaptation labels (rollout.risk cohorts of
# ``new`` users split by tenure) each holds.
COHORT_LABELS = {
    "least_adapted": ("unadapted", "new_recent"),
    "partial": ("partial", "insufficient_data"),
    "adapted": ("adapted", "new_long"),
}

DEFAULT_GUARDRAILS = (
    Guardrail("complaint_rate", 0.02),
    Guardrail("retry_rate", 0.03),
    Guardrail("feedback_score", 0.05),
    Guardrail("pushback_rate", 0.05),
)


@dataclass(frozen=True)
class Policy:
    """What the team will tolerate, how fast they must be done, and how they weigh the two
    harms (:data:`rollout.policy.POLICY_LIMITS` says what each field means)."""

    guardrails: tuple[Guardrail, ...] = DEFAULT_GUARDRAILS
    alpha: float = policy_default("alpha")
    power: float = policy_default("power")
    max_step_share: float = policy_default("max_step_share")  # of a cohort, in one step
    deadline_days: float = policy_default("deadline_days")
    exposure_day_cost: float = policy_default("exposure_day_cost")
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
    """A rollback cohort as plan.json summarises it."""

    users: int
    daily_active: float  # mean share of days its users were active
    mean_risk: float


@dataclass(frozen=True)
class Plan:
    experiment_id: str
    feature_key: str
    created_at: datetime
    as_of: datetime
    policy: Policy
    rollback_value: Any
    current_value: Any
    option: str  # the chosen option's name
    reason: str
    options: tuple[Option, ...]
    members: Mapping[str, tuple[str, ...]]  # cohort -> user ids (treated users only)
    cohort_stats: Mapping[str, CohortStats] = field(default_factory=dict)

    def chosen(self) -> Option:
        return next(o for o in self.options if o.name == self.option)

    @property
    def strategy(self) -> str:
        return self.chosen().strategy


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


REQUIRED_COLUMNS = (
    "user_id",
    "adaptation_label",
    "days_exposed",
    "evidence",
    "n_post",
    "daily_active",
)


def _population(
    frame: pd.DataFrame,
    policy: Policy,
    half_life_days: float,
    start: Mapping[str, Mapping[str, float]] | None,
) -> Population:
    metrics = [g.metric for g in policy.guardrails]
    values = {m: frame[m].to_numpy(dtype=float) for m in metrics}
    spread = {}
    for metric, column in values.items():
        present = column[~np.isnan(column)]
        spread[metric] = float(np.std(present, ddof=1)) if len(present) >= 2 else math.nan
    cohort = frame["cohort"].to_numpy(dtype=object)
    daily = frame["daily_active"].to_numpy(dtype=float)

    def model(mask: np.ndarray) -> PowerModel:
        return PowerModel(
            CohortPower.of(daily[mask], {m: v[mask] for m, v in values.items()}, spread),
            policy.guardrails,
            alpha=policy.alpha,
            power=policy.power,
            min_hold_hours=policy.min_hold_hours,
            max_hold_hours=policy.max_hold_hours,
        )

    power = {c: model(cohort == c) for c in COHORT_ORDER}
    power[EVERYONE] = model(np.ones(len(frame), dtype=bool))
    bucket = frame["bucket"].to_numpy(dtype=float)
    moved = np.zeros(len(frame), dtype=bool)
    rolled = np.zeros(len(frame), dtype=bool)
    for kind, shares in (start or {}).items():
        for name, share in shares.items():
            inside = (cohort == name) | (name == EVERYONE)
            hit = inside & ((bucket < share) | (share >= 1.0))
            moved |= hit
            if kind == "rollback":
                rolled |= hit
    scale = (
        frame["risk_scale"].to_numpy(dtype=float) if "risk_scale" in frame else np.ones(len(frame))
    )
    return Population(
        cohort=cohort,
        bucket=bucket,
        adaptation=Adaptation(
            evidence=frame["evidence"].to_numpy(dtype=float).clip(0.0, 1.0),
            days_exposed=frame["days_exposed"].to_numpy(dtype=float).clip(min=0.0),
            activity_factor=activity_factor(frame["n_post"].to_numpy(dtype=float)),
            daily_active=daily.clip(0.0, 1.0),
            half_life_days=half_life_days,
            scale=scale,
        ),
        moved=moved,
        rolled=rolled,
        power=power,
    )


def search_options(
    population: Population,
    policy: Policy,
    *,
    horizon_days: float,
    start: Mapping[str, Mapping[str, float]] | None = None,
) -> list[Option]:
    """Every option of the plan space, costed, with its Pareto flag."""
    metrics = [g.metric for g in policy.guardrails]
    options = [
        cost_option(
            spec,
            population,
            metrics=metrics,
            horizon_days=horizon_days,
            exposure_day_cost=policy.exposure_day_cost,
            start=start,
        )
        for spec in enumerate_options(
            population,
            max_step_share=policy.max_step_share,
            bridge=policy.bridge_value is not None,
            start=start,
        )
    ]
    distinct, seen = [], set()
    for option in options:  # holds that come out the same (at the longest) are one option
        key = tuple((s.cohort, s.kind, s.coverage, s.min_hold_hours) for s in option.stages)
        if key not in seen:
            seen.add(key)
            distinct.append(option)
    front = pareto_front(distinct)
    out = [replace(o, pareto=o.name in front) for o in distinct]
    if policy.max_step_share < 1.0:  # everyone at once stays as the reference, not a choice
        note = (
            f"moves every user in one step, above the largest step share of "
            f"{policy.max_step_share:.0%}: shown for comparison only"
        )
        out = [
            replace(o, warnings=(*o.warnings, note)) if o.strategy == "immediate" else o
            for o in out
        ]
    return out


def recommend(
    options: Sequence[Option], policy: Policy, pool: Sequence[Option] | None = None
) -> tuple[Option, str]:
    """The option to use (lowest combined cost among those within the deadline, from
    ``pool`` when given) and why, in a sentence a product manager understands."""
    candidates = list(pool if pool is not None else options)
    if policy.max_step_share < 1.0 and pool is None:
        candidates = [o for o in candidates if o.strategy != "immediate"] or candidates
    fits = [o for o in candidates if o.fits_deadline] or candidates
    best = min(fits, key=lambda o: (round(o.combined_cost, 6), o.duration_days, o.name))
    return best, explain(best, options, policy)


def _count(value: float, noun: str) -> str:
    """``value`` rounded, with ``noun`` in the plural unless it is one."""
    return f"{value:,.0f} {noun}{'' if round(value) == 1 else 's'}"


def _days(value: float) -> str:
    days = max(value, 0.0)
    if days < 1.0 - 1e-9:
        return f"{round(days * 24):.0f} hours"
    return f"{days:.0f} day" if round(days) == 1 else f"{days:.0f} days"


def _when(timing: Any) -> str:
    first, last = round(timing.first_day * 24), round(timing.last_day * 24)
    if last == 0:
        return "at once"
    if first == 0:
        return f"within {_days(timing.last_day)}"
    if first == last:
        return f"on day {timing.first_day:.0f}"
    return f"from day {timing.first_day:.0f} to day {timing.last_day:.0f}"


def _likely_pause(option: Option, policy: Policy) -> str:
    """Where the guardrails are expected to see a disruption and pause, if anywhere."""
    reach = 1.0
    for stage in option.stages:
        if stage.detect_probability >= 0.5:
            moved = {s.cohort: s.cumulative_users for s in option.stages[: stage.index + 1]}
            waiting = sum(t.users for t in option.timing.values()) - sum(moved.values())
            caught = reach * stage.detect_probability
            return (
                f" Its guardrails are expected to see a disruption at stage {stage.index} "
                f"({COHORT_WORDS.get(stage.cohort, stage.cohort)}, {stage.coverage:.0%}; "
                f"chance {caught:.0%}): the rollout then pauses, and the {waiting:,} users not "
                f"yet moved stay on the current model until the {policy.deadline_days:g}-day "
                "deadline unless it is re-planned."
            )
        reach *= 1.0 - stage.detect_probability
    return ""


def explain(best: Option, options: Sequence[Option], policy: Policy) -> str:
    """What the recommended option does and what it trades against rolling everyone back
    at once, with the exchange rate."""
    immediate = next((o for o in options if o.strategy == "immediate"), None)
    rate = f"{policy.exposure_day_cost:g} exposed user-days count as one second disruption"
    if best.strategy == "immediate" or immediate is None:
        staged = [o for o in options if o.strategy != "immediate" and o.fits_deadline]
        text = (
            f"Roll everyone back at once: about {best.harms.second_disruptions:,.0f} second "
            "disruptions and no more days on the current model."
        )
        if staged:
            gentlest = min(staged, key=lambda o: o.combined_cost)
            fewer = best.harms.second_disruptions - gentlest.harms.second_disruptions
            if fewer > 0.5:
                text += (
                    f" The best staged option ({gentlest.spec.label}) would expect {fewer:,.0f} "
                    f"fewer second disruptions for {gentlest.harms.exposed_user_days:,.0f} "
                    f"exposed user-days, which costs more at {rate}."
                )
        return text + f" ({rate}.)" if "costs more" not in text else text
    parts = [f"the {t.users:,} {COHORT_WORDS[c]} {_when(t)}" for c, t in best.timing.items()]
    moves = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    fewer = immediate.harms.second_disruptions - best.harms.second_disruptions
    more = best.harms.exposed_user_days - immediate.harms.exposed_user_days
    trade = (
        f"to expect {fewer:,.0f} fewer second disruptions than rolling everyone back at once "
        f"for {more:,.0f} more exposed user-days"
        if fewer >= 0.5
        else f"with {_count(-fewer, 'more second disruption')} and {more:,.0f} more exposed "
        "user-days than rolling everyone back at once"
    )
    return (
        f"Moves {moves} ({_days(best.duration_days)} in all), {trade}: at {rate}, a combined "
        f"cost of {best.combined_cost:,.0f} against {immediate.combined_cost:,.0f}."
        + _likely_pause(best, policy)
    )


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
    start: Mapping[str, Mapping[str, float]] | None = None,
    horizon_days: float | None = None,
    cohorts: Mapping[str, str] | None = None,
) -> Plan:
    """Search and cost the rollback options for the treated ``users``; recommend one.

    ``users``: one row per treated user with ``user_id``, ``adaptation_label``,
    ``days_exposed``, ``evidence`` and ``n_post`` (rollout.risk.score_users),
    ``daily_active`` and one column per guardrail metric (the user's mean in the recent
    window; NaN without data); optionally ``risk_scale`` (observed over planned disruption,
    from a replan). ``start``: what a replanned rollback already serves
    (``{"rollback": {cohort: share}, "bridge": {...}}``); ``horizon_days``: the days left
    until the deadline (default: the policy's deadline); ``cohorts``: each user's cohort
    when it is already fixed (a replan keeps the plan's saved groups), users outside it left
    out.
    """
    if users.empty:
        raise ValueError(f"experiment {experiment_id!r} has no treated users to roll back")
    missing = [c for c in REQUIRED_COLUMNS if c not in users]
    if missing:
        raise ValueError(f"users lack the columns {missing}")
    if users["user_id"].duplicated().any():
        raise ValueError("users must hold each user once")
    half_life = half_life_days or DEFAULT_HALF_LIFE_DAYS
    frame = users.reset_index(drop=True).copy()
    if cohorts is None:
        frame["cohort"] = assign_cohorts(frame, policy, half_life)
    else:
        frame["cohort"] = frame["user_id"].astype(str).map(cohorts)
        frame = frame[frame["cohort"].notna()].reset_index(drop=True)
        if frame.empty:
            raise ValueError("none of the users is in the plan's cohorts")
    frame["bucket"] = [hash_bucket(feature_key, str(u)) for u in frame["user_id"]]
    population = _population(frame, policy, half_life, start)
    horizon = policy.deadline_days if horizon_days is None else horizon_days
    options = search_options(population, policy, horizon_days=horizon, start=start)
    best, reason = recommend(options, policy)
    options = [replace(o, recommended=o.name == best.name) for o in options]
    risk = population.adaptation.risk(0.0)
    stats = {
        str(c): CohortStats(
            users=len(rows),
            daily_active=float(rows["daily_active"].mean()),
            mean_risk=float(risk[rows.index].mean()),
        )
        for c, rows in frame.groupby("cohort")
    }
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
        option=best.name,
        reason=reason,
        options=tuple(options),
        members=members,
        cohort_stats=stats,
    )


def choose(plan: Plan, strategy: str) -> Plan:
    """The same plan with the best option of another strategy chosen (the comparison stays,
    the recommendation is still marked)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    pool = [o for o in plan.options if o.strategy == strategy]
    best, reason = recommend(plan.options, plan.policy, pool)
    return replace(plan, option=best.name, reason=f"Chosen by hand ({strategy}): {reason}")


def stage_rules(plan: Plan, stage: Stage, froze: bool = False) -> list[RuleSpec]:
    """The force rules that are live after ``stage``, first match first (``froze``: an
    earlier stage, of a plan this one re-plans, froze users new to the experiment)."""
    rules: list[RuleSpec] = []
    chosen = plan.chosen()
    froze = froze or any(s.kind == "freeze" and s.index <= stage.index for s in chosen.stages)
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


def stage_documents(
    plan: Plan,
    *,
    environments: Sequence[str] = ("production",),
    hash_attribute: str = "id",
    first_index: int = 0,
    froze: bool = False,
) -> list[dict[str, Any]]:
    """The chosen option's stages as plan.json holds them, numbered from ``first_index``,
    each with its GrowthBook payload and REST request bodies."""
    groups = stage_groups(plan)
    out = []
    for stage in plan.chosen().stages:
        index = first_index + stage.index
        rules = stage_rules(plan, stage, froze)
        payload = build_stage_payload(
            plan.feature_key,
            default_value=plan.current_value,
            rules=rules,
            groups=groups,
            hash_attribute=hash_attribute,
        )
        partial = stage.kind != "freeze" and stage.coverage < 1.0
        out.append(
            {
                "index": index,
                "cohort": stage.cohort,
                "kind": stage.kind,
                "coverage": stage.coverage,
                "cumulative_coverage": round(stage.cumulative_coverage, 6),
                "users": stage.users,
                "cumulative_users": stage.cumulative_users,
                "start_day": round(stage.start_day, 4),
                "min_hold_hours": stage.min_hold_hours,
                "power": _rounded(stage.power, 4),
                "required_users": stage.required_users,
                "detect_probability": round(stage.detect_probability, 4),
                "expected_disrupted_users": round(stage.expected_disruptions, 3),
                "underpowered": partial and not stage.can_see,
                "serving": {"rollback": dict(stage.rollback), "bridge": dict(stage.bridge)},
                "guardrails": [
                    {
                        "metric": g.metric,
                        "max_regression": g.max_regression,
                        "min_detectable_regression": _rounded(stage.min_detectable.get(g.metric)),
                    }
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
                            description=f"stage {index}, {rule.cohort} {rule.note}",
                            hash_attribute=hash_attribute,
                        )
                        for rule in rules
                    ],
                    "owner_tag": owner_tag(plan.feature_key),
                },
            }
        )
    return out


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def option_document(option: Option) -> dict[str, Any]:
    """An option as plan.json lists it."""
    harms = option.harms
    return {
        "strategy": option.strategy,
        "name": option.name,
        "label": option.spec.label,
        "stages": len(option.stages),
        "duration_days": round(option.duration_days, 4),
        "expected_second_disruptions": round(harms.second_disruptions, 2),
        "expected_disrupted_users": round(harms.second_disruptions, 2),
        "exposed_user_days": round(harms.exposed_user_days, 1),
        "expected_new_adapters": round(harms.new_adapters, 2),
        "combined_cost": round(option.combined_cost, 2),
        "recommended": option.recommended,
        "pareto": option.pareto,
        "fits_deadline": option.fits_deadline,
        "timing": {
            c: {
                "users": t.users,
                "first_day": round(t.first_day, 4),
                "last_day": round(t.last_day, 4),
            }
            for c, t in option.timing.items()
        },
        "warnings": list(option.warnings),
    }


def plan_document(
    plan: Plan,
    *,
    environments: Sequence[str] = ("production",),
    hash_attribute: str = "id",
    mode: str = "live",
) -> dict[str, Any]:
    """plan.json: the data contract's shape, plus each stage's REST request bodies, every
    option costed and the reason for the recommendation."""
    if mode not in ("live", "record_only"):
        raise ValueError(f"mode must be live or record_only, got {mode!r}")
    return {
        "experiment_id": plan.experiment_id,
        "feature_key": plan.feature_key,
        "created_at": plan.created_at.isoformat(),
        "as_of": plan.as_of.isoformat(),
        "strategy": plan.strategy,
        "option": plan.option,
        "reason": plan.reason,
        "mode": mode,
        "revision": 1,
        "rollback_value": plan.rollback_value,
        "current_value": plan.current_value,
        "policy": policy_document(plan.policy),
        "options": [option_document(o) for o in plan.options],
        "cohorts": {
            c: {
                "users": s.users,
                "mean_risk": round(s.mean_risk, 4),
                "daily_active": round(s.daily_active, 4),
            }
            for c, s in plan.cohort_stats.items()
        },
        "stages": stage_documents(plan, environments=environments, hash_attribute=hash_attribute),
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
        "exposure_day_cost": policy.exposure_day_cost,
        "bridge_value": policy.bridge_value,
        "min_hold_hours": policy.min_hold_hours,
        "max_hold_hours": policy.max_hold_hours,
        "long_tenure_days": policy.long_tenure_days,
    }


def policy_from_document(data: Mapping[str, Any]) -> Policy:
    """The :class:`Policy` a plan.json's ``policy`` describes (:func:`policy_document`)."""
    fields = dict(data)
    guardrails = tuple(
        Guardrail(g["metric"], g["max_regression"]) for g in fields.pop("guardrails")
    )
    return Policy(guardrails=guardrails, **fields)
