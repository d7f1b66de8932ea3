"""Reads and writes of persisted analysis runs and of what the surfaces show of the data;
every surface reads results through here.

pandas is imported inside the functions that return frames, so that a command that only
counts rows (``aftershock status``) starts without it."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import sqlalchemy as sa
from sqlmodel import Session, col, select

from analytics.db import ensure_schema, rows_frame
from analytics.documents import USERS_CSV_COLUMNS, AnalysisDocument

if TYPE_CHECKING:
    import pandas as pd

from analytics.models import (
    AnalysisRun,
    AnalysisUser,
    ExperimentSnapshot,
    Exposure,
    FeatureSnapshot,
    IngestRun,
    Interaction,
    utc_now,
)


class AnalysisOutput(Protocol):
    """What :func:`save_analysis` stores: an analysis result (the pipeline's)."""

    @property
    def users(self) -> pd.DataFrame: ...

    def document(self) -> AnalysisDocument: ...

    def parameters(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class StoredAnalysis:
    """A stored analysis run: its id, analysis.json, and the parameters it ran with (as
    ``AnalysisParams.to_json`` wrote them)."""

    id: int
    analysed_at: datetime
    document: AnalysisDocument
    parameters: dict[str, Any]

    @property
    def until(self) -> str | None:
        """The moment the run analysed the data as of (``--as-of``), or None for all of it."""
        until: str | None = (self.parameters.get("periods") or {}).get("until")
        return until


def save_analysis(engine: sa.Engine, result: AnalysisOutput) -> int:
    """Store the run (parameters, code version, time, results) and its per-user scores, in
    one transaction; return the run id."""
    ensure_schema(engine)
    document = result.document()
    users = result.users
    with Session(engine) as session:
        run = AnalysisRun(
            experiment_id=document.experiment_id,
            analysed_at=datetime.fromisoformat(document.analysed_at),
            code_version=document.code_version,
            parameters=result.parameters(),
            results=document.to_json(),
            data_version=getattr(result, "data_version", None),
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
                "adaptation_method": method or None,
                "unscored_reason": reason or None,
            }
            for user_id, variation, first, n_pre, n_post, score, p_value, label, method, reason in (
                zip(*(users[c] for c in USERS_CSV_COLUMNS), strict=True)
            )
        ]
        if rows:  # Core executemany: an ORM bulk insert is several times slower here
            session.connection().execute(AnalysisUser.__table__.insert(), rows)  # type: ignore[attr-defined]
        session.commit()
        return run.id


def _stored(run: AnalysisRun) -> StoredAnalysis:
    assert run.id is not None
    return StoredAnalysis(
        id=run.id,
        analysed_at=run.analysed_at,
        document=AnalysisDocument.from_json(run.results),
        parameters=dict(run.parameters),
    )


def load_latest_analysis(
    engine: sa.Engine, experiment_id: str, *, full_only: bool = False
) -> StoredAnalysis | None:
    """The most recent stored run of ``experiment_id``; with ``full_only``, the most recent
    that analysed all the data (not a snapshot as of a past moment, ``analyze --as-of``)."""
    ensure_schema(engine)
    with Session(engine) as session:
        runs = session.exec(
            select(AnalysisRun.id, AnalysisRun.parameters)
            .where(AnalysisRun.experiment_id == experiment_id, AnalysisRun.purpose == "analysis")
            .order_by(col(AnalysisRun.id).desc())
        )
        for run_id, parameters in runs:
            if not full_only or (parameters.get("periods") or {}).get("until") is None:
                run = session.get(AnalysisRun, run_id)
                return None if run is None else _stored(run)
    return None


def load_analysis(engine: sa.Engine, run_id: int) -> StoredAnalysis | None:
    """The stored run ``run_id``."""
    ensure_schema(engine)
    with Session(engine) as session:
        run = session.get(AnalysisRun, run_id)
        return None if run is None else _stored(run)


def list_analysed_experiments(engine: sa.Engine) -> list[str]:
    """Experiments with at least one stored analysis, most recently analysed first."""
    ensure_schema(engine)
    with Session(engine) as session:
        runs = session.exec(
            select(AnalysisRun.experiment_id)
            .where(AnalysisRun.purpose == "analysis")
            .order_by(col(AnalysisRun.id).desc())
        )
        return list(dict.fromkeys(runs.all()))


# --- reusing an analysis of the same data -----------------------------------------------------


def data_version(engine: sa.Engine) -> str:
    """What identifies the stored data an analysis reads: the newest ingest run that wrote
    rows, the rows ingests wrote in all, and the exposures and interactions stored now (rows
    removed by ``aftershock db check --remove`` change the last two). Equal versions mean the
    same data; it is read before an analysis starts, so one that overlaps an ingest is stored
    with the older version and never reused for the newer data."""
    runs = IngestRun.__table__  # type: ignore[attr-defined]
    with engine.connect() as connection:
        newest, written = connection.execute(
            sa.select(sa.func.max(runs.c.id), sa.func.sum(runs.c.rows_inserted)).where(
                runs.c.rows_inserted > 0
            )
        ).one()
        counts = [
            connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (Exposure.__table__, Interaction.__table__)  # type: ignore[attr-defined]
        ]
    return f"{newest or 0}:{written or 0}:{counts[0]}:{counts[1]}"


def data_end(engine: sa.Engine, experiment_id: str) -> datetime:
    """The latest stored instant an analysis of ``experiment_id`` could read: its last
    exposure or the last interaction (of anyone; an upper bound), whichever is later."""
    exposures = Exposure.__table__  # type: ignore[attr-defined]
    interactions = Interaction.__table__  # type: ignore[attr-defined]
    with engine.connect() as connection:
        ends = [
            connection.execute(
                sa.select(sa.func.max(exposures.c.timestamp)).where(
                    exposures.c.experiment_id == experiment_id
                )
            ).scalar(),
            connection.execute(sa.select(sa.func.max(interactions.c.timestamp))).scalar(),
        ]
    return max((e for e in ends if e is not None), default=datetime.min.replace(tzinfo=UTC))


def find_reusable_analysis(
    engine: sa.Engine,
    experiment_id: str,
    parameters: dict[str, Any],
    version: str,
    code_version: str,
) -> AnalysisDocument | None:
    """The document of a stored run (an analysis or a report snapshot) of ``experiment_id``
    with these parameters, over data of ``version``, by this code version; else None."""
    ensure_schema(engine)
    with Session(engine) as session:
        runs = session.exec(
            select(AnalysisRun.parameters, AnalysisRun.results)
            .where(
                AnalysisRun.experiment_id == experiment_id,
                AnalysisRun.data_version == version,
                AnalysisRun.code_version == code_version,
            )
            .order_by(col(AnalysisRun.id).desc())
        )
        for stored, results in runs:
            if stored == parameters:
                return AnalysisDocument.from_json(results)
    return None


def save_report_snapshot(
    engine: sa.Engine, parameters: dict[str, Any], document: AnalysisDocument, version: str
) -> int:
    """Keep an analysis as of a moment for the weekly report (its document, without per-user
    rows); it is never an experiment's latest analysis."""
    with Session(engine) as session:
        run = AnalysisRun(
            experiment_id=document.experiment_id,
            analysed_at=datetime.fromisoformat(document.analysed_at),
            code_version=document.code_version,
            parameters=parameters,
            results=document.to_json(),
            purpose="report_snapshot",
            data_version=version,
        )
        session.add(run)
        session.commit()
        assert run.id is not None
        return run.id


def load_analysis_users(engine: sa.Engine, run_id: int) -> pd.DataFrame:
    """The per-user rows of a stored run, as in users.csv."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(AnalysisUser).where(AnalysisUser.analysis_run_id == run_id)
        ).all()
    columns = ["analysis_run_id", *USERS_CSV_COLUMNS]
    users = rows_frame(rows, columns).drop(columns="analysis_run_id")
    # As users.csv writes them: empty, not missing, when a user was scored (or a run predates
    # the columns).
    for column in ("adaptation_method", "unscored_reason"):
        users[column] = users[column].fillna("")
    return users


def _float(value: Any) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# --- exposures and interactions, as the surfaces show them ------------------------------------


def check_database(engine: sa.Engine) -> None:
    """Raise ``sqlalchemy.exc.SQLAlchemyError`` unless the database answers a query."""
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))


def list_exposed_experiments(engine: sa.Engine) -> list[str]:
    """Experiments with stored exposures, sorted (read from the exposures' primary key)."""
    ensure_schema(engine)
    with Session(engine) as session:
        return sorted(session.exec(select(Exposure.experiment_id).distinct()).all())


def experiment_hint(engine: sa.Engine, experiment_id: str) -> str:
    """What to say after "experiment X has no exposures": the closest stored experiment's key
    when it looks like a typo, else the stored keys (or that there are none)."""
    return closest_experiment(
        experiment_id,
        list_exposed_experiments(engine),
        listed_as="experiments with exposures",
        when_none="no exposures are stored yet: ingest them first "
        "(aftershock ingest exposures FILE)",
    )


def closest_experiment(
    experiment_id: str, known: list[str], *, listed_as: str, when_none: str
) -> str:
    """``did you mean 'x'?`` when ``experiment_id`` looks like a typo of a ``known`` key, else
    the known keys (``listed_as``: how to name them), else ``when_none``."""
    import difflib

    if not known:
        return when_none
    close = difflib.get_close_matches(experiment_id, known, n=1, cutoff=0.8)
    if close:
        return f"did you mean {close[0]!r}?"
    shown = ", ".join(repr(k) for k in known[:10]) + (", ..." if len(known) > 10 else "")
    return f"{listed_as}: {shown}"


def load_exposure_span(engine: sa.Engine, experiment_id: str) -> tuple[datetime, datetime] | None:
    """The first and last stored exposure of an experiment (aware UTC), or None."""
    exposures = Exposure.__table__  # type: ignore[attr-defined]
    query = sa.select(sa.func.min(exposures.c.timestamp), sa.func.max(exposures.c.timestamp))
    with engine.connect() as connection:
        first, last = connection.execute(
            query.where(exposures.c.experiment_id == experiment_id)
        ).one()
    if first is None or last is None:
        return None
    return first, last


def load_exposed_feature(engine: sa.Engine, experiment_id: str) -> str | None:
    """The feature whose rule ran the experiment, as its exposures name it (if they do)."""
    exposures = Exposure.__table__  # type: ignore[attr-defined]
    query = sa.select(sa.func.min(exposures.c.feature_key)).where(
        exposures.c.experiment_id == experiment_id
    )
    with engine.connect() as connection:
        value: str | None = connection.execute(query).scalar()
    return value


def users_with_text(engine: sa.Engine, user_ids: list[str]) -> set[str]:
    """Which of ``user_ids`` have an interaction stored with its text (see
    :mod:`analytics.ingest.retention`), read user by user through the (user, time) index."""
    table = Interaction.__table__  # type: ignore[attr-defined]
    found: set[str] = set()
    with engine.connect() as connection:
        for start in range(0, len(user_ids), 500):
            part = user_ids[start : start + 500]
            query = (
                sa.select(table.c.user_id)
                .where(table.c.user_id.in_(part), table.c.prompt.is_not(None))
                .distinct()
            )
            found.update(connection.execute(query).scalars())
    return found


def load_prompt_examples(
    engine: sa.Engine, user_id: str, first_exposure: datetime, *, with_text: bool, per_side: int
) -> pd.DataFrame:
    """One user's last ``per_side`` interactions before ``first_exposure`` and last
    ``per_side`` from it on (read through the (user, time) index): ``side``, ``timestamp``,
    ``prompt_length``, ``hedge``, ``pushback``, ``constraint`` and, when ``with_text``,
    ``prompt``."""
    columns: list[Any] = [
        Interaction.timestamp,
        Interaction.prompt_length,
        Interaction.has_hedge,
        Interaction.has_pushback,
        Interaction.has_constraint,
    ]
    if with_text:
        columns.append(Interaction.prompt)
    rows = []
    with Session(engine) as session:
        for side, condition in (
            ("before", col(Interaction.timestamp) < first_exposure),
            ("after", col(Interaction.timestamp) >= first_exposure),
        ):
            found = session.exec(
                select(*columns)
                .where(Interaction.user_id == user_id, condition)
                .order_by(col(Interaction.timestamp).desc())
                .limit(per_side)
            ).all()
            rows += [(side, *row) for row in reversed(found)]
    import pandas as pd

    names = ["side", "timestamp", "prompt_length", "hedge", "pushback", "constraint"]
    return pd.DataFrame(rows, columns=[*names, "prompt"] if with_text else names)


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
