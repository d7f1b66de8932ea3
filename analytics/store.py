"""Reads and writes of persisted analysis runs; every surface reads results through here."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa
from sqlmodel import Session, col, select

from analytics.analysis.pipeline import USERS_CSV_COLUMNS, AnalysisResult, analysis_document
from analytics.db import ensure_schema
from analytics.models import AnalysisRun, AnalysisUser, ExperimentSnapshot, FeatureSnapshot, utc_now


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
