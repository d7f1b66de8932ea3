"""The ramp: a plan's stages applied in order, judged by their guardrails, paused, resumed,
aborted or superseded, every change compare-and-set on the plan's version and audited.

``apply_stage`` (a stage's saved groups and rules written to GrowthBook for a live plan, or
recorded for a record-only one, and the transition recorded), ``advance_plan`` (the next stage
once the hold has passed and the guardrails say advance, or forced with a reason),
``change_status`` and ``evaluate_plan`` (the current stage's guardrail decision). At most one
plan per feature is in progress; the database enforces it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from analytics.analysis.outcomes import load_user_outcomes
from analytics.errors import AftershockError
from rollout.documents import PlanDocument, PlanStage
from rollout.growthbook.rules import EVERYONE
from rollout.guardrails import (
    Guardrail,
    GuardrailDecision,
    GuardrailParams,
    assign_arms,
    decide_stage,
)
from rollout.models import PlanEvent, PlanMode, PlanStatus, RollbackPlan
from rollout.store import (
    PlanUpdate,
    list_plans_in_progress,
    load_plan,
    load_plan_events,
    load_plan_members,
    record_plan_event,
    update_plan_states,
)

if TYPE_CHECKING:
    from analytics.settings import Settings

from rollout.errors import (
    GrowthBookNotConfiguredError,
    PlanError,
    PlanInProgressError,
    PlanNotFoundError,
    PlanRefusedError,
    VersionConflictError,
)


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
    superseded: tuple[int, ...] = ()  # plans this one aborted when it started


TERMINAL = (PlanStatus.aborted, PlanStatus.completed)


def _state(plan: RollbackPlan) -> dict[str, Any]:
    return {
        "status": str(plan.status),
        "current_stage": plan.current_stage,
        "pending_stage": plan.pending_stage,
        "version": plan.version,
    }


def _update(
    plan: RollbackPlan,
    *,
    action: str,
    actor: str,
    changes: dict[str, Any],
    stage: int | None = None,
    details: dict[str, Any] | None = None,
    outcome: str = "ok",
    at: datetime | None = None,
) -> PlanUpdate:
    """The compare-and-set of ``plan`` from its version, with its audit event (before, after)."""
    assert plan.id is not None
    after = {**_state(plan), **{k: changes[k] for k in changes if k in _state(plan)}}
    after["status"] = str(after["status"])
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
    return PlanUpdate(plan.id, plan.version, event, changes)


def _commit(engine: sa.Engine, updates: list[PlanUpdate]) -> list[RollbackPlan]:
    """Apply the updates in one transaction; a plan that moved meanwhile is a version
    conflict, and a second plan of a feature in progress a refusal naming the first."""
    try:
        updated = update_plan_states(engine, updates)
    except sa.exc.IntegrityError as error:
        started = updates[-1].plan_id
        plan = require_plan(engine, started)
        others = list_plans_in_progress(engine, plan.feature_key, exclude=started)
        if not others:  # not the index on plans in progress: nothing to explain
            raise
        raise _in_progress(plan, others[0], supersede_hint=True) from error
    if updated is None:
        moved = next(
            (u for u in updates if require_plan(engine, u.plan_id).version != u.expected_version),
            updates[-1],
        )
        raise VersionConflictError(
            f"plan {moved.plan_id} changed since version {moved.expected_version}: read it "
            "again and retry"
        )
    return updated


def transition(
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
    update = _update(
        plan,
        action=action,
        actor=actor,
        changes=changes,
        stage=stage,
        details=details,
        outcome=outcome,
        at=at,
    )
    return _commit(engine, [update])[0]


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


def _in_progress(
    plan: RollbackPlan, other: RollbackPlan, *, supersede_hint: bool
) -> PlanInProgressError:
    where = (
        f"stage {other.current_stage}"
        if other.current_stage >= 0
        else f"writing stage {other.pending_stage}"
    )
    message = (
        f"plan {other.id} of feature {plan.feature_key!r} is in progress ({other.status}, "
        f"{where}): plan {plan.id} cannot start until it completes or is aborted"
    )
    if supersede_hint:
        message += (
            f', or start plan {plan.id} superseding it (API: "supersede": true; CLI: '
            f"--supersede), which aborts plan {other.id}"
        )
    return PlanInProgressError(message, other.id)


def require_version(
    engine: sa.Engine,
    plan_id: int,
    expected_version: int,
    action: str,
    actor: str,
    at: datetime | None = None,
) -> RollbackPlan:
    """The plan, if it is still at ``expected_version``; else the attempt is audited as
    refused and a :class:`VersionConflictError` raised (the caller read a stale state)."""
    plan = require_plan(engine, plan_id)
    if plan.version != expected_version:
        refuse(engine, plan, action, actor, f"stale version {expected_version}", at=at)
        raise VersionConflictError(
            f"plan {plan_id} is at version {plan.version}, not {expected_version}: "
            "read it again and retry"
        )
    return plan


def _starts(plan: RollbackPlan) -> bool:
    """Whether applying a stage now starts the plan (it has applied none and writes none)."""
    return plan.current_stage < 0 and plan.status != PlanStatus.reconciling


def _superseded(
    engine: sa.Engine,
    plan: RollbackPlan,
    *,
    supersede: bool,
    actor: str,
    action: str,
    at: datetime | None,
) -> list[RollbackPlan]:
    """The feature's other plans in progress, which starting ``plan`` aborts; refuses (audited)
    when there are any and ``supersede`` is not asked."""
    assert plan.id is not None
    others = list_plans_in_progress(engine, plan.feature_key, exclude=plan.id)
    if others and not supersede:
        refusal = _in_progress(plan, others[0], supersede_hint=True)
        refuse(
            engine,
            plan,
            action,
            actor,
            str(refusal),
            {"in_progress_plan_id": others[0].id},
            at=at,
        )
        raise refusal
    return others


def _carried(engine: sa.Engine, plan_id: int, stage: int) -> dict[str, Any]:
    """What the write of ``stage`` was started with (forced, reason, superseded plans), for
    the event that completes it after an interruption: a forced stage stays forced."""
    for event in reversed(load_plan_events(engine, plan_id)):
        if event.action == "apply" and event.stage == stage and event.outcome == "started":
            details = event.details or {}
            carried: dict[str, Any] = {
                k: details[k] for k in ("forced", "reason", "supersedes") if k in details
            }
            if details.get("forced"):
                carried["forced_by"] = event.actor
            return carried
    return {}


def _check_next_stage(
    plan: RollbackPlan, stage: int, expected_version: int | None
) -> list[PlanStage]:
    """The plan's stages, if ``stage`` is the one to apply now (the next, or the one being
    written); refuses otherwise."""
    if expected_version is not None and plan.version != expected_version:
        raise VersionConflictError(
            f"plan {plan.id} is at version {plan.version}, not {expected_version}: "
            "read it again and retry"
        )
    stages = PlanDocument.from_json(plan.document).stages
    if plan.status == PlanStatus.aborted or (
        plan.status == PlanStatus.completed and stage != plan.current_stage
    ):
        raise PlanRefusedError(f"plan {plan.id} is {plan.status}; it takes no more stages")
    reconciling = plan.status == PlanStatus.reconciling
    allowed = {plan.pending_stage} if reconciling else {plan.current_stage, plan.current_stage + 1}
    if stage not in allowed or not 0 <= stage < len(stages):
        expected = plan.pending_stage if reconciling else plan.current_stage + 1
        raise PlanRefusedError(
            f"plan {plan.id} is at stage {plan.current_stage}; the next stage to apply is "
            f"{expected} (of 0..{len(stages) - 1})"
        )
    return stages


def _start_stage(
    engine: sa.Engine,
    plan: RollbackPlan,
    stage: int,
    *,
    actor: str,
    at: datetime | None,
    details: dict[str, Any] | None,
    supersede: bool,
    asked_as: str,
) -> tuple[RollbackPlan, list[RollbackPlan]]:
    """Move the plan to ``reconciling`` for ``stage`` (and, when it starts the plan with
    ``supersede``, abort the plans of the feature in progress in the same transaction);
    return the plan and the plans it superseded."""
    assert plan.id is not None
    superseded: list[RollbackPlan] = []
    if _starts(plan):
        superseded = _superseded(
            engine, plan, supersede=supersede, actor=actor, action=asked_as, at=at
        )
    started_details = dict(details or {})
    if superseded:
        started_details["supersedes"] = [other.id for other in superseded]
    why = f": {details['reason']}" if details and details.get("reason") else ""
    aborts = [
        _update(
            other,
            action="abort",
            actor=actor,
            stage=other.current_stage,
            at=at,
            changes={"status": PlanStatus.aborted, "pending_stage": None},
            details={"reason": f"superseded by plan {plan.id}{why}", "superseded_by": plan.id},
        )
        for other in superseded
    ]
    start = _update(
        plan,
        action="apply",
        actor=actor,
        stage=stage,
        outcome="started",
        at=at,
        changes={"status": PlanStatus.reconciling, "pending_stage": stage},
        details=started_details,
    )
    try:
        return _commit(engine, [*aborts, start])[-1], superseded
    except PlanInProgressError as refusal:  # another start won the race to the index
        named = {"in_progress_plan_id": refusal.in_progress_plan_id}
        refuse(engine, plan, asked_as, actor, str(refusal), named, at=at)
        raise
    except VersionConflictError as conflict:  # another caller moved the plan first
        refuse(engine, plan, asked_as, actor, str(conflict), at=at)
        raise


def _write_or_fail(
    engine: sa.Engine,
    plan: RollbackPlan,
    stage: int,
    client: RuleWriter,
    environments: list[str],
    *,
    actor: str,
    at: datetime | None,
) -> tuple[tuple[str, ...], int | None]:
    """Write the stage to GrowthBook; on a failure, record a ``failed`` event naming the
    command that completes it, and raise."""
    assert plan.id is not None
    try:
        return write_stage(engine, plan, stage, client, environments)
    except AftershockError as error:
        record_plan_event(
            engine,
            PlanEvent(
                plan_id=plan.id,
                action="apply",
                stage=stage,
                actor=actor,
                outcome="failed",
                at=at or datetime.now(UTC),
                details={
                    "before": _state(plan),
                    "error": str(error),
                    "rerun": f"aftershock growthbook apply --plan {plan.id} --stage {stage}",
                },
            ),
        )
        raise


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
    supersede: bool = False,
    asked_as: str = "apply",
) -> AppliedStage:
    """Write stage ``stage`` of a plan to GrowthBook (saved groups, then the rules in one
    published revision) and record the transition; without a client, record it only. A
    record-only plan never writes GrowthBook, whatever ``client`` is. (Surfaces choose the
    client with :func:`open_writer`, which refuses a live plan without GrowthBook.)

    Stages go in order: the next one, or the one being written (to finish an interrupted
    write, which converges). The plan is first moved to ``reconciling`` (compare-and-set on
    its version, so of concurrent callers exactly one goes on), then written, then moved to
    the stage. A GrowthBook failure leaves it ``reconciling`` at its previous stage, with a
    ``failed`` event naming the command that completes it.

    The first stage starts the plan, which is refused while another plan of the feature is
    in progress (:class:`PlanInProgressError`; the database's unique index settles races),
    unless ``supersede``: then those plans are aborted, audited as superseded by this one, in
    the transaction that starts it. ``asked_as`` names the request in refusal events.
    """
    plan = require_plan(engine, plan_id)
    if plan.mode == PlanMode.record_only:
        client = None
    try:
        stages = _check_next_stage(plan, stage, expected_version)
    except (VersionConflictError, PlanRefusedError) as refusal:  # lost a race, or out of turn
        refuse(engine, plan, asked_as, actor, str(refusal), at=now)
        raise
    superseded: list[RollbackPlan] = []
    if plan.status != PlanStatus.reconciling:
        plan, superseded = _start_stage(
            engine,
            plan,
            stage,
            actor=actor,
            at=now,
            details=details,
            supersede=supersede,
            asked_as=asked_as,
        )
    else:
        details = {**_carried(engine, plan_id, stage), **(details or {})}
    rule_ids: tuple[str, ...] = ()
    revision = None
    if client is not None:
        rule_ids, revision = _write_or_fail(
            engine, plan, stage, client, environments, actor=actor, at=now
        )
    last = stage == len(stages) - 1
    recorded = {"recorded_only": client is None, "mode": str(plan.mode)}
    if superseded:
        recorded["supersedes"] = [other.id for other in superseded]
    done = transition(
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
            **recorded,
            "rule_ids": list(rule_ids),
            "revision": revision,
            **(details or {}),
        },
    )
    return AppliedStage(
        plan_id,
        stage,
        client is None,
        rule_ids,
        revision,
        done.version,
        tuple(int(other.id or 0) for other in superseded),
    )


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


def missing_growthbook_settings(settings: Settings) -> list[str]:
    """The environment variables GrowthBook writes need and ``settings`` lack."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    missing = []
    if not settings.growthbook_url:
        missing.append("growthbook_url")
    key = settings.growthbook_api_key
    if key is None or not key.get_secret_value():
        missing.append("growthbook_api_key")
    return [(prefix + name).upper() for name in missing]


def open_writer(
    engine: sa.Engine,
    plan: RollbackPlan,
    factory: Callable[[], Any | None],
    *,
    missing_settings: Sequence[str],
    actor: str,
    action: str,
    record: bool = False,
    at: datetime | None = None,
) -> Any | None:
    """What a stage of ``plan`` is written with: None (recorded only) for a record-only plan,
    even with GrowthBook configured, or when the caller asks to record only (``record``, an
    explicit, audited choice); else the GrowthBook client ``factory`` gives (a context
    manager). A live plan is never recorded silently: without GrowthBook (``factory`` gives
    None) the attempt is refused and audited, naming ``missing_settings``."""
    if plan.mode == PlanMode.record_only or record:
        return None
    client = factory()
    if client is None:
        names = list(missing_settings) or [
            "AFTERSHOCK_GROWTHBOOK_URL",
            "AFTERSHOCK_GROWTHBOOK_API_KEY",
        ]
        message = (
            f"plan {plan.id} is live: its stages are written to GrowthBook, which is not "
            f"configured (set {' and '.join(names)}); nothing was recorded. A plan made "
            "record-only records its stages without GrowthBook."
        )
        refuse(engine, plan, action, actor, message, {"missing_settings": names}, at=at)
        raise GrowthBookNotConfiguredError(message, names)
    return client


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
    supersede: bool = False,
) -> tuple[AppliedStage, GuardrailDecision | None]:
    """Move a plan to its next stage if its hold has passed and its guardrails say
    ``advance`` (or, with ``force`` and a reason, regardless; the caller checks who may).
    A plan left ``reconciling`` by a failed write is completed instead. Starting a plan
    (its first stage) while another of the feature is in progress is refused unless
    ``supersede`` (see :func:`apply_stage`)."""
    now = now or datetime.now(UTC)
    plan = require_version(engine, plan_id, expected_version, "advance", actor, at=now)
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
            asked_as="advance",
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
        message = f"plan {plan_id} is at its last stage"
        refuse(engine, plan, "advance", actor, message, at=now)
        raise PlanRefusedError(message)
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
        message = "a forced advance needs a reason"
        refuse(engine, plan, "advance", actor, message, at=now)
        raise PlanRefusedError(message)
    # Forced: applied over the guardrails' hold or pause (a force they would have allowed
    # anyway is recorded as asked, not as forced).
    overridden = decision is not None and decision.action != "advance"
    details: dict[str, Any] = {"reason": reason, "forced": overridden}
    if force and not overridden:
        details["force_requested"] = True
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
        supersede=supersede,
        asked_as="advance",
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
    plan = require_version(engine, plan_id, expected_version, action, actor)
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
    try:
        return transition(
            engine,
            plan,
            action=action,
            actor=actor,
            stage=plan.current_stage,
            changes={"status": target, "pending_stage": None},
            details={"reason": reason},
        )
    except VersionConflictError as conflict:  # another caller moved the plan first
        refuse(engine, plan, action, actor, str(conflict))
        raise


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
