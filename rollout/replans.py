"""Re-planning a rollback from what its stages saw.

After a partial stage has run, its moved users can be compared with its cohort's users not yet
moved: if moving disrupts a share ``s`` of them and a disrupted user's guardrail metrics get
worse by ``E`` standard deviations (rollout.power.DISRUPTION_EFFECT_SD), each guardrail's
difference of means (moved minus not, signed so that worse is positive) estimates ``s E sd``.
Per guardrail, ``s_g = diff_g / (E sd_g)`` with the Welch standard error scaled alike; the
guardrails' estimates are pooled by inverse variance (as if independent, so the interval is
on the narrow side). Against the share the plan expected among those users (their planned
risk), the ratio is how much riskier (or safer) moving users turned out: every user of the
stage's cohort and of the more adapted cohorts not yet moved has their risk multiplied by it,
and the remaining stages are planned again from what is served now, with the days left until
the deadline (rollout.planner, ``start`` and ``horizon_days``). Stages already applied stay as
they were; the plan's ``revision`` goes up by one and the replan is audited with the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy.stats import norm

from analytics.analysis.outcomes import GUARDRAIL_METRICS, compute_user_metrics, load_user_outcomes
from rollout.documents import PlanDocument, PlanStage
from rollout.errors import PlanError, PlanRefusedError, VersionConflictError
from rollout.growthbook.rules import EVERYONE
from rollout.guardrails import Guardrail, assign_arms
from rollout.models import PlanStatus, RollbackPlan
from rollout.planner import (
    option_document,
    plan_rollback,
    policy_from_document,
    stage_documents,
)
from rollout.plans import load_plan_users
from rollout.power import DISRUPTION_EFFECT_SD
from rollout.ramp import refuse, require_version, transition
from rollout.search import COHORT_ORDER
from rollout.store import load_plan_events, load_plan_members

Z95 = float(norm.ppf(0.975))


@dataclass(frozen=True)
class DisruptionEstimate:
    """The share of moved users disrupted, as a stage's guardrail metrics show it."""

    share: float
    ci_low: float
    ci_high: float
    moved_users: int  # active users with a value of some guardrail metric
    staying_users: int

    @property
    def se(self) -> float:
        return (self.ci_high - self.ci_low) / (2 * Z95)


def estimate_disruption(
    metrics: pd.DataFrame, moved: np.ndarray, guardrails: Sequence[Guardrail]
) -> DisruptionEstimate | None:
    """Pooled estimate of the disrupted share from per-user guardrail ``metrics`` (one row
    per user, NaN without data) split by ``moved``; None when no metric has two users with
    a value in each arm."""
    estimates, weights = [], []
    for guardrail in guardrails:
        values = metrics[guardrail.metric].to_numpy(dtype=float)
        seen = ~np.isnan(values)
        a, b = values[seen & moved], values[seen & ~moved]
        if len(a) < 2 or len(b) < 2:
            continue
        sd = float(np.std(values[seen], ddof=1))
        se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
        if not (sd > 0 and se > 0):
            continue
        sign = GUARDRAIL_METRICS[guardrail.metric]
        scale = DISRUPTION_EFFECT_SD * sd
        estimates.append(sign * (a.mean() - b.mean()) / scale)
        weights.append((scale / se) ** 2)
    if not estimates:
        return None
    total = float(np.sum(weights))
    share = float(np.dot(weights, estimates) / total)
    half = Z95 / math.sqrt(total)
    active = ~metrics[[g.metric for g in guardrails]].isna().all(axis=1).to_numpy()
    return DisruptionEstimate(
        share=share,
        ci_low=share - half,
        ci_high=share + half,
        moved_users=int((active & moved).sum()),
        staying_users=int((active & ~moved).sum()),
    )


@dataclass(frozen=True)
class Observation:
    """What a replan learnt from a stage: the disruption seen against the one planned."""

    stage: int
    cohort: str
    planned_share: float
    observed_share: float | None
    ci_low: float | None
    ci_high: float | None
    moved_users: int
    staying_users: int
    risk_scale: float  # what the remaining users' risks are multiplied by

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def sentence(self) -> str:
        if self.observed_share is None:
            return (
                f"Stage {self.stage} has no users left to compare with, so nothing new was "
                "learnt about the disruption: the remaining stages were planned again with "
                "the days left."
            )
        return (
            f"Stage {self.stage} saw {self.observed_share:.0%} of the moved users disrupted "
            f"(95% interval {self.ci_low:.0%} to {self.ci_high:.0%}; {self.moved_users:,} moved "
            f"against {self.staying_users:,} not yet moved, active users) where the plan "
            f"expected {self.planned_share:.0%}: the risk of the users still to move was "
            f"multiplied by {self.risk_scale:.2f}."
        )


def observe_stage(
    engine: sa.Engine, plan: RollbackPlan, document: PlanDocument, now: datetime
) -> Observation:
    """The disruption the plan's current stage saw since it was applied."""
    assert plan.id is not None and plan.stage_applied_at is not None
    stage = document.stages[plan.current_stage]
    planned = _planned_share(document, stage)
    if stage.kind == "freeze" or stage.coverage >= 1.0:
        return Observation(stage.index, stage.cohort, planned, None, None, None, 0, 0, 1.0)
    users = load_plan_members(engine, plan.id, None if stage.cohort == EVERYONE else stage.cohort)
    outcomes = load_user_outcomes(engine, users, plan.stage_applied_at, now)
    moved = assign_arms(users, plan.feature_key, stage.coverage)
    guardrails = [Guardrail(g.metric, g.max_regression) for g in stage.guardrails]
    estimate = estimate_disruption(compute_user_metrics(outcomes), moved, guardrails)
    if estimate is None:
        return Observation(stage.index, stage.cohort, planned, None, None, None, 0, 0, 1.0)
    scale = max(estimate.share, 0.0) / planned if planned > 0 else 1.0
    return Observation(
        stage=stage.index,
        cohort=stage.cohort,
        planned_share=planned,
        observed_share=estimate.share,
        ci_low=estimate.ci_low,
        ci_high=estimate.ci_high,
        moved_users=estimate.moved_users,
        staying_users=estimate.staying_users,
        risk_scale=scale,
    )


def _planned_share(document: PlanDocument, stage: PlanStage) -> float:
    """The share of the stage's arm the plan expected to be disrupted."""
    expected = sum(
        s.expected_disrupted_users
        for s in document.stages[: stage.index + 1]
        if s.cohort == stage.cohort and s.kind == stage.kind
    )
    size = document.cohorts[stage.cohort].users if stage.cohort in document.cohorts else None
    if size is None:
        size = sum(c.users for c in document.cohorts.values())
    return expected / max(size * stage.coverage, 1e-12)


def _affected(cohort: str) -> set[str]:
    """The cohort a stage observed and those more adapted than it."""
    if cohort not in COHORT_ORDER:
        return set(COHORT_ORDER)
    return set(COHORT_ORDER[COHORT_ORDER.index(cohort) :])


def _started_at(engine: sa.Engine, plan_id: int) -> datetime:
    for event in load_plan_events(engine, plan_id):
        if event.action == "apply" and event.outcome == "ok":
            return event.at
    raise PlanError(f"plan {plan_id} has no stage applied yet")


@dataclass(frozen=True)
class Replan:
    plan_id: int
    revision: int
    version: int
    observation: Observation
    document: dict[str, Any]


def replan_plan(
    engine: sa.Engine,
    plan_id: int,
    *,
    expected_version: int,
    actor: str,
    now: datetime | None = None,
    environments: Sequence[str] = ("production",),
    users: pd.DataFrame | None = None,
) -> Replan:
    """Plan a rollback's remaining stages again from what its current stage saw (module
    docstring), store the new revision of its document and audit it. ``users``: the treated
    users as rollout.planner.plan_rollback reads them (default: from the plan's analysis and
    the recent logs, :func:`rollout.plans.load_plan_users`)."""
    now = now or datetime.now(UTC)
    plan = require_version(engine, plan_id, expected_version, "replan", actor, at=now)
    if plan.status not in (PlanStatus.active, PlanStatus.paused) or plan.stage_applied_at is None:
        message = (
            f"plan {plan_id} is {plan.status}: only a plan with a stage applied and stages "
            "left (active or paused) can be re-planned"
        )
        refuse(engine, plan, "replan", actor, message, at=now)
        raise PlanRefusedError(message)
    document = PlanDocument.from_json(plan.document)
    if plan.current_stage >= len(document.stages) - 1:
        message = f"plan {plan_id} is at its last stage: nothing is left to re-plan"
        refuse(engine, plan, "replan", actor, message, at=now)
        raise PlanRefusedError(message)
    observation = observe_stage(engine, plan, document, now)
    policy = policy_from_document(document.policy)
    cohorts = {
        user: cohort
        for cohort in document.cohorts
        for user in load_plan_members(engine, plan_id, cohort)
    }
    if users is None:
        users, _, as_of, half_life = load_plan_users(
            engine, plan.experiment_id, policy.guardrails, plan.analysis_run_id
        )
    else:
        users, as_of, half_life = users.copy(), now, None
    affected = _affected(document.stages[plan.current_stage].cohort)
    users["risk_scale"] = np.where(
        users["user_id"].astype(str).map(cohorts).isin(affected), observation.risk_scale, 1.0
    )
    elapsed = (now - _started_at(engine, plan_id)) / timedelta(days=1)
    current = document.stages[plan.current_stage]
    replanned = plan_rollback(
        users,
        experiment_id=plan.experiment_id,
        feature_key=plan.feature_key,
        policy=policy,
        rollback_value=document.rollback_value,
        current_value=document.current_value,
        as_of=as_of,
        created_at=now,
        half_life_days=half_life,
        start=current.serving,
        horizon_days=max(policy.deadline_days - elapsed, 0.0),
        cohorts=cohorts,
    )
    # Users new to the experiment stay frozen on the old value once a stage froze them; the
    # new stages carry that rule and drop a freeze stage of their own.
    froze = any(s.kind == "freeze" for s in document.stages[: plan.current_stage + 1])
    kept = plan.document["stages"][: plan.current_stage + 1]
    skip = int(froze and replanned.chosen().stages[0].kind == "freeze")
    fresh = stage_documents(
        replanned, environments=environments, first_index=len(kept) - skip, froze=froze
    )[skip:]
    base = current.start_day + current.min_hold_hours / 24.0
    for stage in fresh:
        stage["start_day"] = round(base + stage["start_day"], 4)
    new_document = {
        **plan.document,
        "stages": kept + fresh,
        "options": [option_document(o) for o in replanned.options],
        "option": replanned.option,
        "strategy": replanned.strategy,
        "reason": f"{observation.sentence()} {replanned.reason}",
        "revision": document.revision + 1,
        "replanned_at": now.isoformat(),
        "observed": observation.to_json(),
    }
    try:
        updated = transition(
            engine,
            plan,
            action="replan",
            actor=actor,
            stage=plan.current_stage,
            at=now,
            changes={"document": new_document},
            details={
                "from_revision": document.revision,
                "to_revision": document.revision + 1,
                "observed": observation.to_json(),
                "option": replanned.option,
                "reason": new_document["reason"],
                "stages_before": len(document.stages),
                "stages_after": len(new_document["stages"]),
            },
        )
    except VersionConflictError as conflict:  # another caller moved the plan first
        refuse(engine, plan, "replan", actor, str(conflict), at=now)
        raise
    return Replan(plan_id, document.revision + 1, updated.version, observation, new_document)


def replan_summary(events: Sequence[Any]) -> list[Mapping[str, Any]]:
    """The plan's revisions from its events, oldest first: created, then each replan."""
    out: list[Mapping[str, Any]] = []
    for event in events:
        if event.action == "create":
            out.append({"revision": 1, "at": event.at, "actor": event.actor, "what": "created"})
        elif event.action == "replan" and event.outcome == "ok":
            out.append(
                {
                    "revision": event.details.get("to_revision"),
                    "at": event.at,
                    "actor": event.actor,
                    "what": event.details.get("reason", ""),
                }
            )
    return out
