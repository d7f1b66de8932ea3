"""Plans end to end: inputs from the stored analysis, storage, stage application, guardrails.

The one place the CLI, the API and the dashboard go through, so they show the same numbers:
``create_plan`` (latest analysis + recent activity -> planner -> stored plan),
``apply_stage`` (a stage's saved groups and rules written to GrowthBook, or recorded only, and
the transition recorded) and ``evaluate_plan`` (the current stage's guardrail decision).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pandas as pd
import sqlalchemy as sa

from analytics.analysis.outcomes import compute_user_metrics, load_user_outcomes
from analytics.errors import AftershockError, NotFoundError
from analytics.store import (
    StoredAnalysis,
    load_analysis,
    load_analysis_users,
    load_latest_analysis,
)
from rollout.documents import PlanDocument
from rollout.growthbook.rules import EVERYONE
from rollout.guardrails import (
    Guardrail,
    GuardrailDecision,
    GuardrailParams,
    assign_arms,
    decide_stage,
)
from rollout.models import PlanEvent, PlanStatus, RollbackPlan
from rollout.planner import Plan, Policy, choose, plan_document, plan_rollback
from rollout.risk import RiskParams, score_users
from rollout.store import (
    load_plan,
    load_plan_events,
    load_plan_members,
    record_plan_event,
    save_plan,
    update_plan_state,
)

ACTIVITY_WINDOW_DAYS = 14  # recent activity the holds are sized on


class PlanError(AftershockError):
    """A plan cannot be made, found or moved as asked."""


class AnalysisNotFoundError(PlanError, NotFoundError):
    """The analysis a plan was asked to be made from does not exist."""


class RuleWriter(Protocol):
    """What applying a stage needs of a GrowthBook client (rollout.growthbook.client)."""

    def upsert_saved_group(self, name: str, attribute_key: str, values: list[str]) -> str: ...

    def apply_rules(
        self,
        feature_key: str,
        rules: list[dict[str, Any]],
        *,
        owner_tag: str,
        environments: list[str],
        expected_rule_ids: Any = None,
    ) -> Any: ...


def load_data_end(engine: sa.Engine) -> datetime:
    """When the analysed users' logs end: the plan's "now" for tenure and recent activity."""
    with engine.connect() as connection:
        value = connection.execute(sa.text("SELECT max(timestamp) FROM interactions")).scalar()
    if value is None:
        raise PlanError("no interactions are stored: ingest interaction logs first")
    if isinstance(value, int):  # SQLite keeps epoch microseconds
        return datetime.fromtimestamp(value / 1e6, UTC)
    moment: datetime = value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def load_plan_analysis(
    engine: sa.Engine, experiment_id: str, analysis_run_id: int | None = None
) -> StoredAnalysis:
    """The analysis a plan is made from: run ``analysis_run_id`` when given, else the latest
    that analysed all the data (an ``--as-of`` snapshot would freeze users as they were).
    Never one whose control arm has no users: nothing would say who adapted."""
    if analysis_run_id is not None:
        run = load_analysis(engine, analysis_run_id)
        if run is None or run.document.experiment_id != experiment_id:
            raise AnalysisNotFoundError(
                f"experiment {experiment_id!r} has no analysis {analysis_run_id}"
            )
    else:
        run = load_latest_analysis(engine, experiment_id, full_only=True)
        if run is None:
            raise PlanError(
                f"experiment {experiment_id!r} has no stored analysis of all its data: run "
                f"`aftershock analyze --experiment {experiment_id}` first"
            )
    control = run.document.control
    if run.document.users.get(control, 0) == 0:
        seen = ", ".join(f"{v} ({n:,} users)" for v, n in run.document.users.items())
        raise PlanError(
            f"analysis {run.id} of {experiment_id!r} has no users in its control arm "
            f"{control!r} (variations: {seen}): analyse with the right `--control`"
        )
    return run


def load_plan_users(
    engine: sa.Engine,
    experiment_id: str,
    guardrails: tuple[Guardrail, ...],
    analysis_run_id: int | None = None,
) -> tuple[pd.DataFrame, int, datetime, float | None]:
    """The treated users of the plan's analysis (:func:`load_plan_analysis`) with their risk
    and recent activity, the analysis run id, the data's end, and the adaptation half-life."""
    run = load_plan_analysis(engine, experiment_id, analysis_run_id)
    users = load_analysis_users(engine, run.id)
    control = run.document.control
    treated = users[users["variation"].astype(str) != control].reset_index(drop=True)
    if treated.empty:
        raise PlanError(f"the analysis of {experiment_id!r} has no treated users")
    ids = treated["user_id"].astype(str).tolist()
    as_of = load_data_end(engine)
    half_life = run.document.adaptation.half_life_days
    scored = score_users(treated, pd.Timestamp(as_of), RiskParams(half_life_days=half_life))
    since = as_of - timedelta(days=ACTIVITY_WINDOW_DAYS)
    outcomes = load_user_outcomes(engine, ids, since, as_of + timedelta(microseconds=1))
    metrics = compute_user_metrics(outcomes)
    scored["daily_active"] = outcomes["active_days"].to_numpy() / ACTIVITY_WINDOW_DAYS
    for guardrail in guardrails:
        scored[guardrail.metric] = metrics[guardrail.metric].to_numpy()
    return scored, run.id, as_of, half_life


def create_plan(
    engine: sa.Engine,
    *,
    experiment_id: str,
    feature_key: str,
    policy: Policy,
    rollback_value: Any,
    current_value: Any,
    strategy: str | None = None,
    environments: tuple[str, ...] = ("production",),
    now: datetime | None = None,
    actor: str = "cli",
    analysis_run_id: int | None = None,
) -> tuple[int, dict[str, Any], Plan]:
    """Plan the rollback of ``feature_key`` from the latest full analysis (or run
    ``analysis_run_id``), store it, and return its id, plan.json and the plan."""
    users, run_id, as_of, half_life = load_plan_users(
        engine, experiment_id, policy.guardrails, analysis_run_id
    )
    plan = plan_rollback(
        users,
        experiment_id=experiment_id,
        feature_key=feature_key,
        policy=policy,
        rollback_value=rollback_value,
        current_value=current_value,
        as_of=as_of,
        created_at=now or datetime.now(UTC),
        half_life_days=half_life,
    )
    if strategy is not None:
        plan = choose(plan, strategy)
    document = plan_document(plan, environments=environments)
    created = PlanEvent(
        plan_id=0,  # set by save_plan, in the same transaction
        action="create",
        actor=actor,
        at=plan.created_at,
        details={"strategy": plan.strategy, "reason": plan.reason, "analysis_run_id": run_id},
    )
    plan_id = save_plan(
        engine,
        document=document,
        members=plan.members,
        analysis_run_id=run_id,
        event=created,
    )
    document = {"id": plan_id, **document}
    return plan_id, document, plan


def require_plan(engine: sa.Engine, plan_id: int) -> RollbackPlan:
    plan = load_plan(engine, plan_id)
    if plan is None:
        raise PlanNotFoundError(f"no plan {plan_id}: `aftershock plan` creates one")
    return plan


@dataclass(frozen=True)
class AppliedStage:
    plan_id: int
    stage: int
    recorded_only: bool
    rule_ids: tuple[str, ...]
    revision: int | None
    version: int  # the plan's version after the stage


class PlanNotFoundError(PlanError):
    """No plan with that id."""


class VersionConflictError(PlanError):
    """The plan changed since the caller read it (or another writer is changing it)."""


class PlanRefusedError(PlanError):
    """The plan's state or its guardrails do not allow what was asked."""

    def __init__(self, message: str, decision: GuardrailDecision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


TERMINAL = (PlanStatus.aborted, PlanStatus.completed)


def _state(plan: RollbackPlan) -> dict[str, Any]:
    return {
        "status": str(plan.status),
        "current_stage": plan.current_stage,
        "pending_stage": plan.pending_stage,
        "version": plan.version,
    }


def _transition(
    engine: sa.Engine,
    plan: RollbackPlan,
    *,
    action: str,
    actor: str,
    changes: dict[str, Any],
    stage: int | None = None,
    details: dict[str, Any] | None = None,
    outcome: str = "ok",
    at: datetime | None = None,
) -> RollbackPlan:
    """Compare-and-set the plan from ``plan.version`` and audit it with before and after."""
    assert plan.id is not None
    after = {**_state(plan), **{k: changes[k] for k in changes if k in _state(plan)}}
    after["version"] = plan.version + 1
    event = PlanEvent(
        plan_id=plan.id,
        action=action,
        stage=stage,
        actor=actor,
        outcome=outcome,
        details={"before": _state(plan), "after": after, **(details or {})},
        at=at or datetime.now(UTC),
    )
    updated = update_plan_state(
        engine, plan.id, expected_version=plan.version, event=event, changes=changes
    )
    if updated is None:
        raise VersionConflictError(
            f"plan {plan.id} changed since version {plan.version}: read it again and retry"
        )
    return updated


def refuse(
    engine: sa.Engine,
    plan: RollbackPlan,
    action: str,
    actor: str,
    reason: str,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Audit a refused attempt (no state changes)."""
    assert plan.id is not None
    record_plan_event(
        engine,
        PlanEvent(
            plan_id=plan.id,
            action=action,
            stage=plan.current_stage,
            actor=actor,
            outcome="refused",
            details={"before": _state(plan), "reason": reason, **(details or {})},
            at=at or datetime.now(UTC),
        ),
    )


def apply_stage(
    engine: sa.Engine,
    plan_id: int,
    stage: int,
    *,
    client: RuleWriter | None,
    environments: list[str],
    actor: str = "cli",
    now: datetime | None = None,
    expected_version: int | None = None,
    details: dict[str, Any] | None = None,
) -> AppliedStage:
    """Write stage ``stage`` of a plan to GrowthBook (saved groups, then the rules in one
    published revision) and record the transition; without a client, record it only.

    Stages go in order: the next one, or the one being written (to finish an interrupted
    write, which converges). The plan is first moved to ``reconciling`` (compare-and-set on
    its version, so of concurrent callers exactly one goes on), then written, then moved to
    the stage. A GrowthBook failure leaves it ``reconciling`` at its previous stage, with a
    ``failed`` event naming the command that completes it.
    """
    plan = require_plan(engine, plan_id)
    if expected_version is not None and plan.version != expected_version:
        raise VersionConflictError(
            f"plan {plan_id} is at version {plan.version}, not {expected_version}: "
            "read it again and retry"
        )
    stages = PlanDocument.from_json(plan.document).stages
    if plan.status == PlanStatus.aborted or (
        plan.status == PlanStatus.completed and stage != plan.current_stage
    ):
        raise PlanRefusedError(f"plan {plan_id} is {plan.status}; it takes no more stages")
    allowed = (
        {plan.pending_stage}
        if plan.status == PlanStatus.reconciling
        else {plan.current_stage, plan.current_stage + 1}
    )
    if stage not in allowed or not 0 <= stage < len(stages):
        expected = (
            plan.pending_stage
            if plan.status == PlanStatus.reconciling
            else (plan.current_stage + 1)
        )
        raise PlanRefusedError(
            f"plan {plan_id} is at stage {plan.current_stage}; the next stage to apply is "
            f"{expected} (of 0..{len(stages) - 1})"
        )
    if plan.status != PlanStatus.reconciling:
        plan = _transition(
            engine,
            plan,
            action="apply",
            actor=actor,
            stage=stage,
            outcome="started",
            at=now,
            changes={
                "status": PlanStatus.reconciling,
                "pending_stage": stage,
            },
            details=details,
        )
    rule_ids: tuple[str, ...] = ()
    revision = None
    if client is not None:
        try:
            rule_ids, revision = write_stage(engine, plan, stage, client, environments)
        except AftershockError as error:
            record_plan_event(
                engine,
                PlanEvent(
                    plan_id=plan_id,
                    action="apply",
                    stage=stage,
                    actor=actor,
                    outcome="failed",
                    at=now or datetime.now(UTC),
                    details={
                        "before": _state(plan),
                        "error": str(error),
                        "rerun": f"aftershock growthbook apply --plan {plan_id} --stage {stage}",
                    },
                ),
            )
            raise
    last = stage == len(stages) - 1
    done = _transition(
        engine,
        plan,
        action="apply",
        actor=actor,
        stage=stage,
        at=now,
        changes={
            "status": PlanStatus.completed if last else PlanStatus.active,
            "current_stage": stage,
            "pending_stage": None,
            "stage_applied_at": now or datetime.now(UTC),
        },
        details={
            "recorded_only": client is None,
            "rule_ids": list(rule_ids),
            "revision": revision,
            **(details or {}),
        },
    )
    return AppliedStage(plan_id, stage, client is None, rule_ids, revision, done.version)


def write_stage(
    engine: sa.Engine, plan: RollbackPlan, stage: int, client: RuleWriter, environments: list[str]
) -> tuple[tuple[str, ...], int | None]:
    """Send a stage's saved groups and rules through ``client`` (which, in dry-run mode,
    prints them instead); the plan's state is not touched. Returns rule ids and revision."""
    assert plan.id is not None
    rest = PlanDocument.from_json(plan.document).stages[stage].rest
    ids = {
        body["name"]: client.upsert_saved_group(
            body["name"], body["attributeKey"], list(body["values"])
        )
        for body in rest["saved_groups"]
    }
    rules = [_resolve_groups(rule, ids, environments) for rule in rest["rules"]]
    applied = client.apply_rules(
        plan.feature_key,
        rules,
        owner_tag=rest["owner_tag"],
        environments=environments,
        expected_rule_ids=_last_applied(engine, plan.id),
    )
    return tuple(applied.rule_ids), applied.revision


def advance_plan(
    engine: sa.Engine,
    plan_id: int,
    *,
    expected_version: int,
    client: RuleWriter | None,
    environments: list[str],
    actor: str,
    force: bool = False,
    reason: str | None = None,
    now: datetime | None = None,
) -> tuple[AppliedStage, GuardrailDecision | None]:
    """Move a plan to its next stage if its hold has passed and its guardrails say
    ``advance`` (or, with ``force`` and a reason, regardless; the caller checks who may).
    A plan left ``reconciling`` by a failed write is completed instead."""
    now = now or datetime.now(UTC)
    plan = require_plan(engine, plan_id)
    if plan.version != expected_version:
        refuse(engine, plan, "advance", actor, f"stale version {expected_version}", at=now)
        raise VersionConflictError(
            f"plan {plan_id} is at version {plan.version}, not {expected_version}: "
            "read it again and retry"
        )
    if plan.status == PlanStatus.reconciling:
        assert plan.pending_stage is not None
        applied = apply_stage(
            engine,
            plan_id,
            plan.pending_stage,
            client=client,
            environments=environments,
            actor=actor,
            now=now,
            expected_version=expected_version,
        )
        return applied, None
    if plan.status in (*TERMINAL, PlanStatus.paused):
        message = f"plan {plan_id} is {plan.status}" + (
            ": resume it first" if plan.status == PlanStatus.paused else ""
        )
        refuse(engine, plan, "advance", actor, message, at=now)
        raise PlanRefusedError(message)
    stages = PlanDocument.from_json(plan.document).stages
    if plan.current_stage + 1 >= len(stages):
        raise PlanRefusedError(f"plan {plan_id} is at its last stage")
    decision = None
    if plan.current_stage >= 0:
        decision = evaluate_plan(engine, plan_id, now=now, record=False)
        if decision.action != "advance":
            figures = {"guardrails": decision.to_dict()}
            if not force:
                message = (
                    f"the guardrails say {decision.action} for stage {plan.current_stage}: "
                    + " ".join(decision.reasons[:2])
                )
                refuse(engine, plan, "advance", actor, message, figures, at=now)
                raise PlanRefusedError(message, decision)
    if force and not reason:
        raise PlanRefusedError("a forced advance needs a reason")
    details: dict[str, Any] = {"reason": reason, "forced": force}
    if decision is not None:
        details["guardrails"] = decision.to_dict()
    applied = apply_stage(
        engine,
        plan_id,
        plan.current_stage + 1,
        client=client,
        environments=environments,
        actor=actor,
        now=now,
        expected_version=expected_version,
        details=details,
    )
    return applied, decision


def change_status(
    engine: sa.Engine,
    plan_id: int,
    action: str,
    *,
    expected_version: int,
    actor: str,
    reason: str | None = None,
) -> RollbackPlan:
    """``pause``, ``resume`` or ``abort`` a plan (compare-and-set on its version, audited).

    Abort stops the plan where it is: the rules already written stay in GrowthBook."""
    plan = require_plan(engine, plan_id)
    if plan.version != expected_version:
        refuse(engine, plan, action, actor, f"stale version {expected_version}")
        raise VersionConflictError(
            f"plan {plan_id} is at version {plan.version}, not {expected_version}: "
            "read it again and retry"
        )
    allowed = {
        "pause": (PlanStatus.draft, PlanStatus.active),
        "resume": (PlanStatus.paused,),
        "abort": (PlanStatus.draft, PlanStatus.active, PlanStatus.paused, PlanStatus.reconciling),
    }[action]
    if plan.status not in allowed:
        message = f"plan {plan_id} is {plan.status}: it cannot {action}"
        refuse(engine, plan, action, actor, message)
        raise PlanRefusedError(message)
    target = {
        "pause": PlanStatus.paused,
        "resume": PlanStatus.active if plan.current_stage >= 0 else PlanStatus.draft,
        "abort": PlanStatus.aborted,
    }[action]
    return _transition(
        engine,
        plan,
        action=action,
        actor=actor,
        stage=plan.current_stage,
        changes={"status": target, "pending_stage": None},
        details={"reason": reason},
    )


def _resolve_groups(
    rule: dict[str, Any], ids: dict[str, str], environments: list[str]
) -> dict[str, Any]:
    resolved = {**rule, "environments": list(environments)}
    if "savedGroups" in rule:
        resolved["savedGroups"] = [
            {**group, "ids": [ids[name] for name in group["ids"]]} for group in rule["savedGroups"]
        ]
    return resolved


def _last_applied(engine: sa.Engine, plan_id: int) -> list[str] | None:
    for event in reversed(load_plan_events(engine, plan_id)):
        if (
            event.action == "apply"
            and event.outcome == "ok"
            and not event.details.get("recorded_only")
        ):
            return list(event.details.get("rule_ids", []))
    return None


def evaluate_plan(
    engine: sa.Engine,
    plan_id: int,
    *,
    now: datetime | None = None,
    record: bool = True,
    actor: str = "cli",
) -> GuardrailDecision:
    """The guardrail decision for a plan's current stage, from the logs since it was applied."""
    plan = require_plan(engine, plan_id)
    if plan.current_stage < 0 or plan.stage_applied_at is None:
        raise PlanError(f"plan {plan_id} has no stage applied yet")
    document = PlanDocument.from_json(plan.document)
    stage = document.stages[plan.current_stage]
    now = now or datetime.now(UTC)
    applied_at = plan.stage_applied_at
    hold_until = applied_at + timedelta(hours=stage.min_hold_hours)
    guardrails = [Guardrail(g.metric, g.max_regression) for g in stage.guardrails]
    cohort = stage.cohort
    if stage.kind == "freeze":
        users: list[str] = []
        coverage = 1.0
    else:
        users = load_plan_members(engine, plan_id, None if cohort == EVERYONE else cohort)
        coverage = stage.coverage
    outcomes = load_user_outcomes(engine, users, applied_at, now)
    arms = assign_arms(users, plan.feature_key, coverage)
    decision = decide_stage(
        outcomes,
        arms,
        coverage=coverage,
        guardrails=guardrails,
        hold_until=hold_until,
        now=now,
        params=GuardrailParams(
            alpha=document.alpha,
            min_rolled_back_users=stage.required_users,
            require_clearance=False,
        ),
    )
    if record:
        record_plan_event(
            engine,
            PlanEvent(
                plan_id=plan_id,
                action="guardrails",
                stage=plan.current_stage,
                actor=actor,
                details=decision.to_dict(),
                at=now,
            ),
        )
    return decision
