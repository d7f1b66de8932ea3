"""Plans made: from the stored analysis and the recent logs, through the planner, to a stored
plan (``create_plan``), with the flag values given or pulled from GrowthBook.

The one place the CLI, the API and the dashboard make plans through, so they show the same
numbers; rollout.ramp moves them, rollout.replans plans them again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from analytics.analysis.outcomes import compute_user_metrics, load_user_outcomes
from analytics.models import Interaction
from analytics.sqltypes import UtcTimestamp
from analytics.store import (
    StoredAnalysis,
    experiment_hint,
    load_analysis,
    load_analysis_users,
    load_exposure_span,
    load_latest_analysis,
)
from analytics.timestamps import accepted_range, require_in_range
from rollout.guardrails import (
    Guardrail,
)
from rollout.models import PlanEvent, PlanMode
from rollout.planner import Plan, Policy, choose, plan_document, plan_rollback
from rollout.risk import RiskParams, score_users
from rollout.store import (
    save_plan,
)

if TYPE_CHECKING:
    pass

from rollout.errors import AnalysisNotFoundError, PlanError
from rollout.flag_values import resolve_flag_values

ACTIVITY_WINDOW_DAYS = 14  # recent activity the holds are sized on


def load_data_end(engine: sa.Engine) -> datetime:
    """When the logs end: the plan's "now" for tenure and recent activity. Only instants in
    the range ingest accepts count, so a row an earlier version stored in year 58,729 cannot
    move it (nor break it)."""
    span = accepted_range()
    stored = Interaction.__table__.c.timestamp  # type: ignore[attr-defined]
    query = sa.select(sa.func.max(stored)).where(
        stored >= sa.bindparam("earliest", span.earliest, type_=UtcTimestamp),
        stored <= sa.bindparam("latest", span.latest, type_=UtcTimestamp),
    )
    with engine.connect() as connection:
        value = connection.execute(query).scalar()
    if value is None:
        raise PlanError("no interactions are stored: ingest interaction logs first")
    moment: datetime = value
    return moment


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
        if run is None and load_exposure_span(engine, experiment_id) is None:
            raise PlanError(
                f"experiment {experiment_id!r} has no exposures; "
                f"{experiment_hint(engine, experiment_id)}"
            )
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
    *,
    run: StoredAnalysis | None = None,
) -> tuple[pd.DataFrame, int, datetime, float | None]:
    """The treated users of the plan's analysis (:func:`load_plan_analysis`, unless ``run``
    is that analysis, already loaded) with their risk and recent activity, the analysis run
    id, the data's end, and the adaptation half-life."""
    if run is None:
        run = load_plan_analysis(engine, experiment_id, analysis_run_id)
    require_in_range(engine, experiment_id, accepted_range())
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
    rollback_value: Any = None,
    current_value: Any = None,
    strategy: str | None = None,
    environments: tuple[str, ...] = ("production",),
    now: datetime | None = None,
    actor: str = "cli",
    analysis_run_id: int | None = None,
    mode: PlanMode | str = PlanMode.live,
    value_options: tuple[str, str] = ("rollback_value", "current_value"),
) -> tuple[int, dict[str, Any], Plan]:
    """Plan the rollback of ``feature_key`` from the latest full analysis (or run
    ``analysis_run_id``), store it, and return its id, plan.json and the plan.

    A flag value left None is read from the feature as ``aftershock growthbook pull`` stored
    it (:func:`resolve_flag_values`; ``value_options`` names the inputs in its error).
    ``mode`` is ``live`` (each stage is written to GrowthBook) or ``record_only``."""
    mode = PlanMode(mode)
    if not feature_key.strip():
        raise PlanError("the feature key is empty: name the GrowthBook feature to roll back")
    run = load_plan_analysis(engine, experiment_id, analysis_run_id)
    given = {
        "rollback_value": rollback_value is not None,
        "current_value": current_value is not None,
    }
    rollback_value, current_value = resolve_flag_values(
        engine,
        run,
        feature_key=feature_key,
        rollback_value=rollback_value,
        current_value=current_value,
        environments=environments,
        options=value_options,
    )
    users, run_id, as_of, half_life = load_plan_users(
        engine, experiment_id, policy.guardrails, analysis_run_id, run=run
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
    document = plan_document(plan, environments=environments, mode=str(mode))
    created = PlanEvent(
        plan_id=0,  # set by save_plan, in the same transaction
        action="create",
        actor=actor,
        at=plan.created_at,
        details={
            "strategy": plan.strategy,
            "reason": plan.reason,
            "analysis_run_id": run_id,
            "mode": str(mode),
            "flag_values_from": {
                name: "request" if was_given else "growthbook" for name, was_given in given.items()
            },
        },
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
