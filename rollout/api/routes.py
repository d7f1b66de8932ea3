"""The ``/v1`` routes: reads for anyone with ``read``, ramp changes for ``ramp``, forced
advances for ``admin``. Every mutation is idempotent by key; plan changes need ``If-Match``."""

from __future__ import annotations

import gc
import time
from contextlib import nullcontext
from dataclasses import asdict
from datetime import timedelta
from typing import Annotated, Any, Literal

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from analytics.analysis.params import build_analysis_params
from analytics.analysis.pipeline import run_analysis
from analytics.models import utc_now
from analytics.store import (
    check_database,
    load_analysis_users,
    load_latest_analysis,
    save_analysis,
)
from analytics.summary import count_exposed_users
from rollout.api import schemas
from rollout.api.deps import (
    STATE_TTL_SECONDS,
    IdempotencyKey,
    Ramper,
    Reader,
    StateDep,
    Version,
)
from rollout.api.idempotency import run_idempotent
from rollout.api.problems import ProblemError
from rollout.documents import PlanDocument
from rollout.growthbook.rules import is_rolled_back
from rollout.guardrails import Guardrail
from rollout.models import PlanMode, RollbackPlan
from rollout.planner import DEFAULT_GUARDRAILS, Policy
from rollout.plans import create_plan
from rollout.ramp import advance_plan, change_status, evaluate_plan, open_writer, refuse
from rollout.replans import replan_plan
from rollout.store import (
    find_user_cohort,
    list_events,
    list_forced_advances,
    list_plans,
    load_plan,
    load_plan_document,
    load_plan_state,
)

router = APIRouter(prefix="/v1")
PlanId = Annotated[int, Path(ge=1, le=2_147_483_647, description="The plan's id.")]
ExperimentId = Annotated[str, Path(min_length=1, max_length=255)]
FeatureKey = Annotated[str, Path(min_length=1, max_length=255)]
FORCED_ADVANCES_SHOWN = 10  # on the ramp; the audit trail has every one


def _require_plan(state: StateDep, plan_id: int) -> RollbackPlan:
    """A plan's state (its document is read apart, see ``_document``)."""
    plan = load_plan_state(state.engine, plan_id)
    if plan is None:
        raise ProblemError(404, "Not found", f"no plan {plan_id}")
    return plan


def _document(state: StateDep, plan: RollbackPlan) -> PlanDocument:
    """A plan's document, read and parsed once per plan version and process: only a replan
    changes it, and a replan moves the version (as every change of state does)."""
    assert plan.id is not None
    entry = state.documents.get(plan.id)
    if entry is not None and entry[0] == plan.version:
        return entry[1]
    document = load_plan_document(state.engine, plan.id)
    assert document is not None
    state.documents[plan.id] = (plan.version, document)
    # Cached documents live long: keep the collector from re-scanning their (many) objects,
    # which showed as tail latency under load.
    gc.freeze()
    return document


def _plan_out(plan: RollbackPlan, document: PlanDocument) -> dict[str, Any]:
    assert plan.id is not None
    nested = {"saved_groups", "guardrails"}
    stages = [
        schemas.StageOut(
            **{k: getattr(stage, k) for k in schemas.StageOut.model_fields if k not in nested},
            guardrails=[schemas.StageGuardrailOut(**asdict(g)) for g in stage.guardrails],
            saved_groups=stage.saved_group_sizes,
        )
        for stage in document.stages
    ]
    return schemas.PlanOut(
        **_plan_state(plan),
        pending_stage=plan.pending_stage,
        stage_applied_at=plan.stage_applied_at,
        option=document.option,
        revision=document.revision,
        reason=document.reason,
        options=[
            schemas.OptionOut(**asdict(o), expected_disrupted_users=o.expected_disrupted_users)
            for o in document.options
        ],
        stages=stages,
    ).model_dump(mode="json")


def _plan_state(plan: RollbackPlan) -> dict[str, Any]:
    """The fields of ``schemas.PlanState`` from a stored plan."""
    return {name: getattr(plan, name) for name in schemas.PlanState.model_fields} | {
        "status": str(plan.status),
        "mode": str(plan.mode),
    }


def _summary(state: StateDep, plan: RollbackPlan) -> schemas.PlanSummary:
    return schemas.PlanSummary(**_plan_state(plan), stages=len(_document(state, plan).stages))


def _etag(response: Response, plan: RollbackPlan) -> None:
    response.headers["ETag"] = f'"{plan.version}"'


# ------------------------------------------------------------------ health


@router.get("/health", response_model=schemas.Health, tags=["health"])
async def health() -> schemas.Health:
    """Liveness: the process answers (no token needed)."""
    return schemas.Health(status="ok")


@router.get("/ready", response_model=schemas.Health, tags=["health"])
def ready(state: StateDep, _: Reader) -> schemas.Health:
    """Readiness: the database answers, and GrowthBook when it is configured."""
    checks: dict[str, str] = {}
    try:
        check_database(state.engine)
        checks["database"] = "ok"
    except sa.exc.SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    client = state.client_factory()
    if client is None:
        checks["growthbook"] = "not configured"
    else:
        try:
            with client as gb:
                gb.ping()
            checks["growthbook"] = "ok"
        except Exception as exc:  # any failure means not ready; say which
            checks["growthbook"] = f"unreachable: {type(exc).__name__}"
    ok = all(v in ("ok", "not configured") for v in checks.values())
    if not ok:
        raise ProblemError(503, "Not ready", "a dependency is unavailable", checks=checks)
    return schemas.Health(status="ok", checks=checks)


# ------------------------------------------------------------------ experiments and analyses


@router.get("/experiments", response_model=schemas.ExperimentList, tags=["experiments"])
def experiments(state: StateDep, _: Reader) -> schemas.ExperimentList:
    """Experiments with exposures, users per variation, and their latest analysis."""
    data = []
    for experiment_id, counts in count_exposed_users(state.engine).items():
        run = load_latest_analysis(state.engine, experiment_id)
        data.append(
            schemas.ExperimentOut(
                experiment_id=experiment_id,
                users=counts,
                latest_analysis_id=None if run is None else run.id,
                analysed_at=None if run is None else run.analysed_at,
            )
        )
    return schemas.ExperimentList(data=data, count=len(data))


@router.get("/experiments/{experiment_id}/analysis", tags=["experiments"])
def get_analysis(experiment_id: ExperimentId, state: StateDep, _: Reader) -> dict[str, Any]:
    """The latest stored analysis (analysis.json, as in the data contract)."""
    run = load_latest_analysis(state.engine, experiment_id)
    if run is None:
        raise ProblemError(
            404,
            "Not found",
            f"experiment {experiment_id!r} has no stored analysis: POST to this URL runs one",
        )
    return {"id": run.id, **run.document.to_json()}


@router.post("/experiments/{experiment_id}/analysis", status_code=201, tags=["experiments"])
def post_analysis(
    experiment_id: ExperimentId,
    request: Request,
    state: StateDep,
    principal: Ramper,
    key: IdempotencyKey,
) -> Any:
    """Run a new analysis on the stored data and store it."""

    def work() -> tuple[int, dict[str, Any]]:
        result = run_analysis(state.engine, build_analysis_params(state.engine, experiment_id))
        run_id = save_analysis(state.engine, result)
        return 201, {"id": run_id, **result.document().to_json()}

    return run_idempotent(state.engine, principal, key, "POST", request.url.path, None, work)


# ------------------------------------------------------------------ plans


@router.post(
    "/features/{feature_key}/plans",
    status_code=201,
    response_model=schemas.PlanOut,
    tags=["plans"],
)
def post_plan(
    feature_key: FeatureKey,
    body: schemas.PlanRequest,
    request: Request,
    state: StateDep,
    principal: Ramper,
    key: IdempotencyKey,
) -> Any:
    """Plan a rollback of the feature from the experiment's latest analysis and store it.

    The flag values default to the feature's experiment rule as pulled from GrowthBook
    (control: rollback value; treatment: current value); 422 when neither given nor pulled.
    ``record_only`` makes a plan whose stages are recorded and never written to GrowthBook."""

    def work() -> tuple[int, dict[str, Any]]:
        guardrails = (
            tuple(Guardrail(g.metric, g.max_regression) for g in body.guardrails)
            if body.guardrails
            else DEFAULT_GUARDRAILS
        )
        try:
            policy = Policy(
                guardrails=guardrails,
                alpha=body.alpha,
                power=body.power,
                max_step_share=body.max_step_share,
                deadline_days=body.deadline_days,
                exposure_day_cost=body.exposure_day_cost,
                bridge_value=body.bridge_value,
                min_hold_hours=body.min_hold_hours,
                max_hold_hours=body.max_hold_hours,
            )
        except ValueError as exc:
            raise ProblemError(422, "Invalid policy", str(exc)) from exc
        plan_id, _, _ = create_plan(
            state.engine,
            experiment_id=body.experiment_id,
            feature_key=feature_key,
            policy=policy,
            rollback_value=body.rollback_value,
            current_value=body.current_value,
            strategy=body.strategy,
            environments=tuple(state.environments),
            actor=principal.name,
            analysis_run_id=body.analysis_id,
            mode=PlanMode.record_only if body.record_only else PlanMode.live,
        )
        plan = _require_plan(state, plan_id)
        return 201, _plan_out(plan, _document(state, plan))

    return run_idempotent(
        state.engine,
        principal,
        key,
        "POST",
        request.url.path,
        body.model_dump(mode="json"),
        work,
    )


@router.get("/features/{feature_key}/plans", response_model=schemas.PlanList, tags=["plans"])
def get_plans(feature_key: FeatureKey, state: StateDep, _: Reader) -> schemas.PlanList:
    """The feature's plans, newest first."""
    data = [_summary(state, p) for p in list_plans(state.engine, feature_key)]
    return schemas.PlanList(data=data, count=len(data))


@router.get("/plans/{plan_id}", response_model=schemas.PlanOut, tags=["plans"])
def get_plan(plan_id: PlanId, response: Response, state: StateDep, _: Reader) -> Any:
    """A plan: its state, strategies compared and stages (ETag: its version)."""
    plan = _require_plan(state, plan_id)
    _etag(response, plan)
    return _plan_out(plan, _document(state, plan))


@router.get("/plans/{plan_id}/document", tags=["plans"])
def get_plan_document(plan_id: PlanId, state: StateDep, _: Reader) -> dict[str, Any]:
    """plan.json in full: each stage's SDK fragment, saved-group members and REST bodies."""
    plan = load_plan(state.engine, plan_id)
    if plan is None:
        raise ProblemError(404, "Not found", f"no plan {plan_id}")
    return {"id": plan_id, **plan.document}


def _decision(state: StateDep, plan: RollbackPlan, refresh: bool) -> dict[str, Any] | None:
    """The current stage's guardrail decision: computed by a refresher (at most every
    ``DECISION_TTL_SECONDS`` per plan version); others get the last one computed."""
    assert plan.id is not None
    if plan.current_stage < 0 or plan.stage_applied_at is None:
        return None
    cached = state.cached_decision(plan.id, plan.version)
    if cached is not False:
        return cached  # type: ignore[return-value]
    if not refresh:  # only a refresher (on a worker thread) computes; the rest never wait
        entry = state.decisions.get(plan.id)
        return entry[2] if entry is not None and entry[1] == plan.version else None
    decision = evaluate_plan(state.engine, plan.id, record=False).to_dict()
    state.decisions[plan.id] = (time.monotonic(), plan.version, decision)
    return decision


def _forced(state: StateDep, plan: RollbackPlan, refresh: bool) -> list[dict[str, Any]]:
    """The plan's last forced advances (they change only with its version)."""
    assert plan.id is not None
    entry = state.forced.get(plan.id)
    if entry is not None and entry[0] == plan.version:
        return entry[1]
    if not refresh:
        return [] if entry is None else entry[1]
    forced = [
        schemas.ForcedAdvanceOut(
            stage=f.stage,
            at=f.at,
            actor=f.actor,
            reason=f.reason,
            guardrails_action=f.guardrails_action,
            event_id=f.event_id,
        ).model_dump(mode="json")
        for f in list_forced_advances(state.engine, plan.id, limit=FORCED_ADVANCES_SHOWN)
    ]
    state.forced[plan.id] = (plan.version, forced)
    return forced


def _ramp_body(state: StateDep, plan_id: int, refresh: bool) -> tuple[dict[str, Any], int] | None:
    """The ramp document of a plan and its version, or None when there is no such plan;
    ``refresh`` reads the plan's state from the database, else the remembered one."""
    entry = state.states.get(plan_id)
    if refresh or entry is None:
        plan = load_plan_state(state.engine, plan_id)
        if plan is None:
            return None
        state.states[plan_id] = (time.monotonic(), plan)
    else:
        plan = entry[1]
    document = _document(state, plan)
    stage = document.stage(plan.current_stage)
    next_at = None
    if stage is not None and plan.stage_applied_at is not None:
        next_at = plan.stage_applied_at + timedelta(hours=stage.min_hold_hours)
    body = schemas.RampOut(
        plan_id=plan_id,
        feature_key=plan.feature_key,
        status=str(plan.status),
        mode=str(plan.mode),
        version=plan.version,
        current_stage=plan.current_stage,
        stages=len(document.stages),
        pending_stage=plan.pending_stage,
        stage_applied_at=plan.stage_applied_at,
        serving=stage.serving if stage else {"rollback": {}, "bridge": {}},
        guardrails=_decision(state, plan, refresh),
        next_advance_at=next_at,
        forced_advances=_forced(state, plan, refresh),
    ).model_dump(mode="json")
    return body, plan.version


@router.get("/plans/{plan_id}/ramp", response_model=schemas.RampOut, tags=["ramp"])
async def get_ramp(plan_id: PlanId, state: StateDep, _: Reader) -> Response:
    """The current stage, what GrowthBook should serve per cohort, the guardrail decision
    with its figures, when the next advance is allowed, the plan's mode and its last forced
    advances (who forced them, when and why).

    This is what bots poll, so each worker serves it from memory: one request at a time
    refreshes a plan's state (older than a second) and its guardrail decision (older than 30
    seconds) from the database while the others get the remembered ones."""
    entry = state.states.get(plan_id)
    if entry is None:
        found = await run_in_threadpool(_ramp_body, state, plan_id, True)
    elif time.monotonic() - entry[0] >= STATE_TTL_SECONDS and state.claim(plan_id):
        try:
            found = await run_in_threadpool(_ramp_body, state, plan_id, True)
        finally:
            state.release(plan_id)
    else:
        found = _ramp_body(state, plan_id, False)
    if found is None:
        raise ProblemError(404, "Not found", f"no plan {plan_id}")
    body, version = found
    return Response(
        orjson.dumps(body), media_type="application/json", headers={"ETag": f'"{version}"'}
    )


def _transition_out(plan: RollbackPlan, **extra: Any) -> dict[str, Any]:
    assert plan.id is not None
    return schemas.TransitionOut(
        plan_id=plan.id,
        status=str(plan.status),
        mode=str(plan.mode),
        current_stage=plan.current_stage,
        version=plan.version,
        **extra,
    ).model_dump(mode="json")


@router.post("/plans/{plan_id}/advance", response_model=schemas.TransitionOut, tags=["ramp"])
def post_advance(
    plan_id: PlanId,
    body: schemas.AdvanceRequest,
    request: Request,
    state: StateDep,
    principal: Ramper,
    key: IdempotencyKey,
    version: Version,
) -> Any:
    """Apply the next stage, if the hold has passed and the guardrails say ``advance``.

    ``force`` (admin scope, with a reason) overrides the guardrails and is audited. A live
    plan's stage is written to GrowthBook, and refused (409) while GrowthBook is not
    configured; a record-only plan's is recorded only, as is any with ``dry_run``. The first
    stage starts the plan: refused (409, naming it) while another plan of the feature is in
    progress, unless ``supersede``, which aborts that plan (audited on both)."""
    _require_plan(state, plan_id)

    def work() -> tuple[int, dict[str, Any]]:
        # Refused inside the idempotent work: the answer is stored under the key, so a retry
        # replays it and the refusal is audited once.
        if body.force and not principal.allows("admin"):
            message = "a forced advance needs the admin scope"
            refuse(state.engine, _require_plan(state, plan_id), "advance", principal.name, message)
            raise ProblemError(403, "Forbidden", message)
        if body.force and not body.reason:
            message = "a forced advance needs a reason"
            refuse(state.engine, _require_plan(state, plan_id), "advance", principal.name, message)
            raise ProblemError(422, "Reason required", message)
        state.forget(plan_id)
        client = open_writer(
            state.engine,
            _require_plan(state, plan_id),
            state.client_factory,
            missing_settings=state.growthbook_missing,
            actor=principal.name,
            action="advance",
            record=body.dry_run,
        )
        with client if client is not None else nullcontext() as gb:
            applied, decision = advance_plan(
                state.engine,
                plan_id,
                expected_version=version,
                client=gb,
                environments=state.environments,
                actor=principal.name,
                force=body.force,
                reason=body.reason,
                supersede=body.supersede,
            )
        state.forget(plan_id)
        for superseded in applied.superseded:
            state.forget(superseded)
        plan = _require_plan(state, plan_id)
        return 200, _transition_out(
            plan,
            recorded_only=applied.recorded_only,
            forced=body.force and decision is not None and decision.action != "advance",
            superseded_plan_ids=list(applied.superseded),
            guardrails=None if decision is None else decision.to_dict(),
        )

    return run_idempotent(
        state.engine, principal, key, "POST", request.url.path, body.model_dump(mode="json"), work
    )


@router.post("/plans/{plan_id}/replan", response_model=schemas.ReplanOut, tags=["ramp"])
def post_replan(
    plan_id: PlanId,
    body: schemas.ReplanRequest,
    request: Request,
    state: StateDep,
    principal: Ramper,
    key: IdempotencyKey,
    version: Version,
) -> Any:
    """Plan the remaining stages again from what the current stage saw (the disruption among
    its moved users against the plan's expectation) and the days left until the deadline.

    Applied stages stay as they were; the document's ``revision`` goes up by one and the
    replan is audited with the estimate. The plan must have a stage applied and stages left."""
    _require_plan(state, plan_id)

    def work() -> tuple[int, dict[str, Any]]:
        state.forget(plan_id)
        replanned = replan_plan(
            state.engine,
            plan_id,
            expected_version=version,
            actor=principal.name,
            environments=state.environments,
        )
        state.forget(plan_id)
        plan = _require_plan(state, plan_id)
        document = _document(state, plan)
        return 200, schemas.ReplanOut(
            **_transition_out(plan),
            revision=replanned.revision,
            observed=replanned.observation.to_json(),
            reason=document.reason,
            stages=len(document.stages),
        ).model_dump(mode="json")

    return run_idempotent(
        state.engine, principal, key, "POST", request.url.path, body.model_dump(mode="json"), work
    )


def _status_route(action: str) -> Any:
    def route(
        plan_id: PlanId,
        body: schemas.TransitionRequest,
        request: Request,
        state: StateDep,
        principal: Ramper,
        key: IdempotencyKey,
        version: Version,
    ) -> Any:
        _require_plan(state, plan_id)

        def work() -> tuple[int, dict[str, Any]]:
            state.forget(plan_id)
            plan = change_status(
                state.engine,
                plan_id,
                action,
                expected_version=version,
                actor=principal.name,
                reason=body.reason,
            )
            return 200, _transition_out(plan)

        return run_idempotent(
            state.engine,
            principal,
            key,
            "POST",
            request.url.path,
            body.model_dump(mode="json"),
            work,
        )

    route.__doc__ = {
        "pause": "Pause a plan: no stage advances until it is resumed.",
        "resume": "Resume a paused plan.",
        "abort": "Stop a plan where it is (the rules already written stay in GrowthBook).",
    }[action]
    route.__name__ = f"post_{action}"
    return route


for _action in ("pause", "resume", "abort"):
    router.post(
        f"/plans/{{plan_id}}/{_action}",
        response_model=schemas.TransitionOut,
        tags=["ramp"],
        name=f"post_{_action}",
    )(_status_route(_action))


# ------------------------------------------------------------------ reports


@router.get(
    "/reports/weekly",
    tags=["reports"],
    responses={
        200: {
            "content": {
                "text/html": {},
                "text/markdown": {},
                "application/zip": {},
                "application/pdf": {},
            },
            "description": "The report file.",
        }
    },
)
def get_weekly_report(
    state: StateDep,
    _: Reader,
    experiment: Annotated[str, Query(min_length=1, max_length=255)],
    week: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=16,
            examples=["2026-W44"],
            description="ISO week (Monday to Sunday, UTC); a week that has not ended is "
            "refused. Default: the last complete week with data.",
        ),
    ] = None,
    format: Annotated[Literal["html", "md", "csv", "pdf"], Query()] = "html",
    feature: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    """The weekly adaptation report of an experiment for an ISO week (as
    ``aftershock report``): the same figures as the dashboard and the CLI."""
    from rollout.report import WeekError, build_weekly_report, report_bytes, report_file_name
    from rollout.report.weeks import ended_week

    now = utc_now()
    try:
        asked = ended_week(week, now)
        report = build_weekly_report(
            state.engine,
            experiment,
            None if asked is None else asked.label,
            feature_key=feature,
            now=now,
        )
    except WeekError as exc:
        raise ProblemError(
            422,
            "Invalid request",
            str(exc),
            errors=[{"field": "query.week", "message": str(exc), "type": "value_error"}],
        ) from exc
    content, media_type = report_bytes(report, format)
    name = report_file_name(report, format)
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


# ------------------------------------------------------------------ users and audit


@router.get("/users/{user_id}/cohort", response_model=schemas.CohortOut, tags=["users"])
def get_user_cohort(
    user_id: Annotated[str, Path(min_length=1, max_length=255)],
    state: StateDep,
    _: Reader,
    feature_key: Annotated[str | None, Query(max_length=255)] = None,
) -> Any:
    """The user's rollback cohort in the newest plan that holds them (of ``feature_key``),
    and whether that plan's current stage serves them the rolled-back or bridge value: the
    attribute an app can pass to the GrowthBook SDK."""
    row = find_user_cohort(state.engine, user_id, feature_key)
    if row is None:
        raise ProblemError(404, "Not found", f"user {user_id!r} is in no rollback plan")
    plan_id, cohort = row
    plan = _require_plan(state, plan_id)
    document = _document(state, plan)
    stage = document.stage(plan.current_stage)
    serving = stage.serving if stage else {"rollback": {}, "bridge": {}}
    rolled = is_rolled_back(plan.feature_key, user_id, serving["rollback"].get(cohort, 0.0))
    bridged = not rolled and is_rolled_back(
        plan.feature_key, user_id, serving["bridge"].get(cohort, 0.0)
    )
    label = None
    if plan.analysis_run_id is not None:
        users = _labels(state, plan.analysis_run_id)
        label = users.get(user_id)
    return schemas.CohortOut(
        user_id=user_id,
        plan_id=plan_id,
        feature_key=plan.feature_key,
        cohort=cohort,
        rolled_back=rolled,
        on_bridge=bridged,
        adaptation_label=label,
    ).model_dump(mode="json")


def _labels(state: StateDep, run_id: int) -> dict[str, str]:
    """The adaptation labels of an analysis run's users (stored runs never change)."""
    labels = state.labels.get(run_id)
    if labels is None:
        users = load_analysis_users(state.engine, run_id)
        labels = state.labels[run_id] = dict(
            zip(users["user_id"], users["adaptation_label"], strict=True)
        )
    return labels


@router.get("/audit", response_model=schemas.AuditList, tags=["audit"])
def get_audit(
    state: StateDep,
    _: Reader,
    plan_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=2_147_483_647)] = 0,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> schemas.AuditList:
    """Every state change and refused attempt (newest first): actor, time, before and after,
    reason, and the guardrail figures at that moment. Pages of ``limit`` events: the next
    page is at ``next_offset``, or (stable while events are added) ``before_id`` set to
    the last event's id; ``next_offset`` is null after the last page."""
    rows = list_events(
        state.engine, plan_id=plan_id, limit=limit + 1, offset=offset, before_id=before_id
    )
    more = len(rows) > limit
    rows = rows[:limit]
    data = [
        schemas.AuditEvent(
            id=e.id or 0,
            plan_id=e.plan_id,
            at=e.at,
            action=e.action,
            stage=e.stage,
            actor=e.actor,
            outcome=e.outcome,
            forced=bool((e.details or {}).get("forced")),
            details=e.details,
        )
        for e in rows
    ]
    return schemas.AuditList(
        data=data, count=len(data), next_offset=offset + len(data) if more else None
    )
