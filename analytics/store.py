"""Reads and writes of persisted analysis runs; every surface reads results through here."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from analytics.db import ensure_schema
from analytics.models import (
    AnalysisRun,
    AnalysisUser,
    ExperimentSnapshot,
    FeatureSnapshot,
    PlanEvent,
    PlanUser,
    RollbackPlan,
    utc_now,
)
from analytics.pipeline import USERS_CSV_COLUMNS, AnalysisResult, analysis_document


def save_analysis(engine: sa.Engine, result: AnalysisResult) -> int:
    """Store the run (parameters, code version, time, results) and its per-user scores, in
    one transaction; return the run id."""
    ensure_schema(engine)
    document = analysis_document(result)
    users = result.users
    with Session(engine) as session:
        run = AnalysisRun(
            experiment_id=result.params.experiment_id,
            analysed_at=result.analysed_at,
            code_version=result.code_version,
            parameters=_json_safe(asdict(result.params)),
            results=document,
        )
        session.add(run)
        session.flush()
        assert run.id is not None
        rows = [
            {
                "analysis_run_id": run.id,
                "user_id": user_id,
                "variation": variation,
                "first_exposure": first.to_pydatetime(),
                "n_pre": int(n_pre),
                "n_post": int(n_post),
                "adaptation_score": _float(score),
                "adaptation_p": _float(p_value),
                "adaptation_label": label,
            }
            for user_id, variation, first, n_pre, n_post, score, p_value, label in zip(
                users["user_id"],
                users["variation"],
                users["first_exposure"],
                users["n_pre"],
                users["n_post"],
                users["adaptation_score"],
                users["adaptation_p"],
                users["adaptation_label"],
                strict=True,
            )
        ]
        if rows:  # Core executemany: an ORM bulk insert is several times slower here
            session.connection().execute(AnalysisUser.__table__.insert(), rows)  # type: ignore[attr-defined]
        session.commit()
        return run.id


def load_latest_analysis(engine: sa.Engine, experiment_id: str) -> AnalysisRun | None:
    """The most recent stored run of ``experiment_id``."""
    ensure_schema(engine)
    with Session(engine) as session:
        return session.exec(
            select(AnalysisRun)
            .where(AnalysisRun.experiment_id == experiment_id)
            .order_by(col(AnalysisRun.id).desc())
        ).first()


def load_analysis_users(engine: sa.Engine, run_id: int) -> pd.DataFrame:
    """The per-user rows of a stored run, as in users.csv."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(AnalysisUser).where(AnalysisUser.analysis_run_id == run_id)
        ).all()
    columns = ["analysis_run_id", *USERS_CSV_COLUMNS]
    return pd.DataFrame(rows, columns=columns).drop(columns="analysis_run_id")


def _float(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def save_plan(
    engine: sa.Engine,
    *,
    document: dict[str, Any],
    members: Mapping[str, Sequence[str]],
    analysis_run_id: int | None,
    event: PlanEvent | None = None,
) -> int:
    """Store a plan (plan.json), its users' cohorts and (optionally) the event that created
    it, in one transaction; return its id."""
    ensure_schema(engine)
    with Session(engine) as session:
        plan = RollbackPlan(
            experiment_id=document["experiment_id"],
            feature_key=document["feature_key"],
            analysis_run_id=analysis_run_id,
            strategy=document["strategy"],
            document=document,
        )
        session.add(plan)
        session.flush()
        assert plan.id is not None
        rows = [
            {"plan_id": plan.id, "user_id": user, "cohort": cohort}
            for cohort, users in members.items()
            for user in users
        ]
        if rows:
            session.connection().execute(PlanUser.__table__.insert(), rows)  # type: ignore[attr-defined]
        if event is not None:
            event.plan_id = plan.id
            session.add(event)
        session.commit()
        return plan.id


def load_plan(engine: sa.Engine, plan_id: int) -> RollbackPlan | None:
    ensure_schema(engine)
    with Session(engine) as session:
        return session.get(RollbackPlan, plan_id)


def load_plan_state(engine: sa.Engine, plan_id: int) -> RollbackPlan | None:
    """A plan's state without its document (which can be megabytes): for hot paths."""
    with Session(engine) as session:
        return session.exec(
            select(RollbackPlan)
            .where(RollbackPlan.id == plan_id)
            .options(defer(RollbackPlan.document))  # type: ignore[arg-type]
        ).first()


def load_plan_document(engine: sa.Engine, plan_id: int) -> dict[str, Any] | None:
    """A plan's document (plan.json) alone."""
    with Session(engine) as session:
        document = session.exec(
            select(RollbackPlan.document).where(RollbackPlan.id == plan_id)
        ).first()
        return None if document is None else dict(document)


def list_plans(engine: sa.Engine, feature_key: str | None = None) -> list[RollbackPlan]:
    """Plans, newest first (of one feature, or all)."""
    ensure_schema(engine)
    query = select(RollbackPlan).order_by(col(RollbackPlan.id).desc())
    if feature_key is not None:
        query = query.where(RollbackPlan.feature_key == feature_key)
    with Session(engine) as session:
        return list(session.exec(query).all())


def load_plan_members(engine: sa.Engine, plan_id: int, cohort: str | None = None) -> list[str]:
    """The user ids of a plan (or of one of its cohorts), sorted."""
    query = select(PlanUser.user_id).where(PlanUser.plan_id == plan_id)
    if cohort is not None:
        query = query.where(PlanUser.cohort == cohort)
    with Session(engine) as session:
        return sorted(session.exec(query).all())


def update_plan_state(
    engine: sa.Engine,
    plan_id: int,
    *,
    expected_version: int,
    event: PlanEvent,
    changes: Mapping[str, Any],
) -> RollbackPlan | None:
    """Apply ``changes`` to a plan's columns and record the event, atomically, only if the
    plan is still at ``expected_version`` (compare-and-set; the version goes up by one);
    return the updated plan, or None when another writer got there first."""
    values: dict[str, Any] = {"version": RollbackPlan.version + 1, **changes}
    with Session(engine) as session:
        changed = session.execute(
            sa.update(RollbackPlan)
            .where(col(RollbackPlan.id) == plan_id, col(RollbackPlan.version) == expected_version)
            .values(**values)
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return None
        event.plan_id = plan_id
        session.add(event)
        session.commit()
        return session.get(RollbackPlan, plan_id)


def record_plan_event(engine: sa.Engine, event: PlanEvent) -> None:
    """Record an event that changes no state (a guardrail decision, a refused attempt)."""
    with Session(engine) as session:
        session.add(event)
        session.commit()


def load_plan_events(engine: sa.Engine, plan_id: int) -> list[PlanEvent]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(PlanEvent).where(PlanEvent.plan_id == plan_id).order_by(col(PlanEvent.id))
            ).all()
        )


def _sha256(definition: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)).hexdigest()


def save_growthbook_snapshots(
    engine: sa.Engine, features: Sequence[dict[str, Any]], experiments: Sequence[dict[str, Any]]
) -> tuple[int, int]:
    """Store fetched GrowthBook features and experiments, each distinct definition once;
    return how many were new (features, experiments)."""
    ensure_schema(engine)
    fetched_at = utc_now()
    new_features = new_experiments = 0
    with Session(engine) as session:
        for feature in features:
            digest = _sha256(feature)
            exists = session.exec(
                select(FeatureSnapshot.id).where(
                    FeatureSnapshot.feature_key == feature["id"],
                    FeatureSnapshot.environment == "",
                    FeatureSnapshot.sha256 == digest,
                )
            ).first()
            if exists is None:
                session.add(
                    FeatureSnapshot(
                        feature_key=feature["id"],
                        revision=feature.get("revision", {}).get("version")
                        if isinstance(feature.get("revision"), dict)
                        else None,
                        fetched_at=fetched_at,
                        sha256=digest,
                        definition=feature,
                    )
                )
                new_features += 1
        for experiment in experiments:
            digest = _sha256(experiment)
            exists = session.exec(
                select(ExperimentSnapshot.id).where(
                    ExperimentSnapshot.experiment_id == experiment["id"],
                    ExperimentSnapshot.sha256 == digest,
                )
            ).first()
            if exists is None:
                session.add(
                    ExperimentSnapshot(
                        experiment_id=experiment["id"],
                        tracking_key=experiment.get("trackingKey"),
                        fetched_at=fetched_at,
                        sha256=digest,
                        definition=experiment,
                    )
                )
                new_experiments += 1
        session.commit()
    return new_features, new_experiments


def load_growthbook_experiment(engine: sa.Engine, tracking_key: str) -> dict[str, Any] | None:
    """The latest fetched GrowthBook experiment whose tracking key (or id) is ``tracking_key``."""
    ensure_schema(engine)
    with Session(engine) as session:
        row = session.exec(
            select(ExperimentSnapshot)
            .where(
                (ExperimentSnapshot.tracking_key == tracking_key)
                | (ExperimentSnapshot.experiment_id == tracking_key)
            )
            .order_by(col(ExperimentSnapshot.fetched_at).desc(), col(ExperimentSnapshot.id).desc())
        ).first()
        return None if row is None else dict(row.definition)
