"""SQLModel tables of what happened: exposures, interactions, ingest runs, GrowthBook snapshots
and analysis runs (``XBase`` holds the fields, ``X(table=True)`` the table). The tables of what
to do about it (plans, their events, API tokens) are in ``rollout.models``. Timestamps are
aware UTC datetimes (see :class:`UtcTimestamp`)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from analytics.sqltypes import BigId, Identifier, JsonDocument, UtcTimestamp


def utc_now() -> datetime:
    return datetime.now(UTC)


class IngestKind(StrEnum):
    exposures = "exposures"
    interactions = "interactions"


class IngestStatus(StrEnum):
    running = "running"
    completed = "completed"
    refused = "refused"  # nothing was written
    failed = "failed"  # stopped after writing some chunks, and cannot be resumed as it is


# PROVENANCE: exposures and interactions name the ingest run that stored them in
# ``ingest_run_id``, not a declared foreign key (migration 0011). Only the ingest writes it,
# with the id of the run it has just committed, and runs are never deleted; as a foreign key,
# PostgreSQL checked it with a trigger per row: a million interactions took 20.1 s to ingest
# with it, 15.3 s without. tests/test_ingest_pipeline.py checks that every stored row's run
# exists.


class ExposureBase(SQLModel):
    user_id: str = Field(sa_type=Identifier, primary_key=True)
    timestamp: datetime = Field(sa_type=UtcTimestamp, primary_key=True)
    experiment_id: str = Field(sa_type=Identifier, primary_key=True)
    variation_id: str = Field(sa_type=Identifier, primary_key=True)
    feature_key: str | None = Field(default=None, sa_type=Identifier)
    attributes: dict[str, Any] | None = Field(default=None, sa_type=JsonDocument)


class Exposure(ExposureBase, table=True):
    """One ``experiment_viewed`` event, keyed by what it is: (experiment, user, time, variation).

    The key is the natural one, so storing an event twice is impossible and no surrogate id
    costs an extra index on every insert. Leading with the experiment serves every
    per-experiment scan and join, so exposures need no second index.
    """

    __tablename__ = "exposures"
    __table_args__ = (
        sa.PrimaryKeyConstraint(
            "experiment_id", "user_id", "timestamp", "variation_id", name="pk_exposures"
        ),
    )

    # The ingest run that stored the row (ingest_runs; see PROVENANCE above).
    ingest_run_id: int | None = None
    # A digest of the content columns, compared when the key comes again
    # (analytics.ingest.conflicts); NULL for rows stored before migration 0007.
    content_digest: int | None = Field(default=None, sa_type=sa.BigInteger)


class InteractionBase(SQLModel):
    event_id: str = Field(sa_type=Identifier, primary_key=True)
    user_id: str = Field(sa_type=Identifier)
    timestamp: datetime = Field(sa_type=UtcTimestamp)
    # NULL when the text was not kept (AFTERSHOCK_STORE_TEXT; analytics.ingest.retention).
    prompt: str | None = Field(default=None, sa_type=sa.Text)
    response: str | None = Field(default=None, sa_type=sa.Text)
    model_version: str | None = Field(default=None, max_length=255)
    session_id: str | None = Field(default=None, max_length=255)
    latency_ms: float | None = None
    feedback: int | None = Field(default=None, sa_type=sa.SmallInteger)
    complaint: bool | None = None
    retry: bool | None = None


class InteractionFeatures(SQLModel):
    """What analyses read instead of the text: computed once, at ingest (analytics.features).

    NULL only on rows stored before these columns existed, until ``backfill_features`` runs.
    """

    prompt_length: int | None = None
    response_length: int | None = None
    has_agreement: bool | None = None
    has_refusal: bool | None = None
    has_hedge: bool | None = None
    has_pushback: bool | None = None
    has_constraint: bool | None = None
    has_politeness: bool | None = None
    has_question: bool | None = None
    has_code_block: bool | None = None


ANALYSED_COLUMNS = (
    *InteractionFeatures.model_fields,
    "latency_ms",
    "feedback",
    "complaint",
    "retry",
)


class Interaction(InteractionBase, InteractionFeatures, table=True):
    """One user turn of the LLM feature, keyed by its ``event_id`` (stored once)."""

    __tablename__ = "interactions"
    __table_args__ = (
        # Per-user, time-ordered reads: the cohort join, pre/post windows, user timelines.
        # It also carries every column an analysis aggregates, so the analysis reads the
        # index alone and never the wide rows with their text.
        sa.Index("ix_interactions_user_time_metrics", "user_id", "timestamp", *ANALYSED_COLUMNS),
    )

    # The ingest run that stored the row (ingest_runs; see PROVENANCE above).
    ingest_run_id: int | None = None
    # A digest of the content columns, compared when the key comes again
    # (analytics.ingest.conflicts); NULL for rows stored before migration 0007.
    content_digest: int | None = Field(default=None, sa_type=sa.BigInteger)


class IngestRunBase(SQLModel):
    kind: IngestKind = Field(sa_type=sa.String(16))
    file_name: str = Field(max_length=1024)
    sha256: str = Field(max_length=64, index=True)
    format: str = Field(max_length=16)
    compression: str | None = Field(default=None, max_length=16)
    strict: bool = False
    status: IngestStatus = Field(default=IngestStatus.running, sa_type=sa.String(16))
    rows_read: int = 0
    rows_inserted: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    rows_blank: int = 0
    started_at: datetime = Field(default_factory=utc_now, sa_type=UtcTimestamp)
    finished_at: datetime | None = Field(default=None, sa_type=UtcTimestamp)
    error: str | None = Field(default=None, sa_type=sa.Text)
    rejects_path: str | None = Field(default=None, max_length=1024)


class IngestRun(IngestRunBase, table=True):
    """One ingest of one file: what was read, written, skipped and refused.

    ``rows_done`` is the resume checkpoint: the number of data rows (in file order) whose
    outcome is committed. It is written in the same transaction as those rows, so a killed
    ingest resumes exactly where its last commit ended.
    """

    __tablename__ = "ingest_runs"

    id: int | None = Field(default=None, primary_key=True)
    rows_done: int = 0


class IngestReject(SQLModel, table=True):
    """A row that was not ingested, with where it was and why."""

    __tablename__ = "ingest_rejects"
    __table_args__ = (sa.Index("ix_ingest_rejects_run_line", "ingest_run_id", "line"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    ingest_run_id: int = Field(foreign_key="ingest_runs.id")
    line: int
    column: str = Field(max_length=255)
    reason: str = Field(max_length=1024)
    value: str | None = Field(default=None, max_length=1024)


class FeatureSnapshotBase(SQLModel):
    feature_key: str = Field(sa_type=Identifier)
    # "" when the snapshot is the whole feature (REST API), else the SDK environment.
    environment: str = Field(default="", max_length=255)
    revision: int | None = None
    fetched_at: datetime = Field(default_factory=utc_now, sa_type=UtcTimestamp)
    source: str = Field(default="api", max_length=32)
    sha256: str = Field(max_length=64)
    definition: dict[str, Any] = Field(sa_type=JsonDocument)


class FeatureSnapshot(FeatureSnapshotBase, table=True):
    """A GrowthBook feature definition as fetched; identical definitions are stored once."""

    __tablename__ = "feature_snapshots"
    __table_args__ = (
        sa.UniqueConstraint(
            "feature_key", "environment", "sha256", name="uq_feature_snapshots_content"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)


class AnalysisRunBase(SQLModel):
    experiment_id: str = Field(sa_type=Identifier, index=True)
    analysed_at: datetime = Field(default_factory=utc_now, sa_type=UtcTimestamp)
    code_version: str = Field(max_length=64)
    parameters: dict[str, Any] = Field(sa_type=JsonDocument)
    results: dict[str, Any] = Field(sa_type=JsonDocument)  # the analysis.json document
    # "analysis" (aftershock analyze, the API, the dashboard) or "report_snapshot" (as of a
    # week's start or end, kept so that the weekly report is not computed twice).
    purpose: str = Field(default="analysis", max_length=16)
    # The stored data it read (analytics.store.data_version): equal means nothing changed.
    data_version: str | None = Field(default=None, max_length=128)


class AnalysisRun(AnalysisRunBase, table=True):
    """One run of ``aftershock analyze`` (or a weekly report's snapshot, by ``purpose``): its
    parameters, code version and results."""

    __tablename__ = "analysis_runs"

    id: int | None = Field(default=None, primary_key=True)


class AnalysisUser(SQLModel, table=True):
    """A user's cohort and adaptation score in one analysis run (users.csv, stored)."""

    __tablename__ = "analysis_users"

    analysis_run_id: int = Field(foreign_key="analysis_runs.id", primary_key=True)
    user_id: str = Field(sa_type=Identifier, primary_key=True)
    variation: str = Field(sa_type=Identifier)
    first_exposure: datetime = Field(sa_type=UtcTimestamp)
    n_pre: int
    n_post: int
    adaptation_score: float | None = None
    adaptation_p: float | None = None
    adaptation_label: str = Field(max_length=32)
    # How the user was scored and, when not, why (users.csv; NULL in runs before 0009).
    adaptation_method: str | None = Field(default=None, max_length=32)
    unscored_reason: str | None = Field(default=None, max_length=32)


class ExperimentSnapshotBase(SQLModel):
    experiment_id: str = Field(sa_type=Identifier, index=True)  # GrowthBook's id (exp_...)
    tracking_key: str | None = Field(default=None, sa_type=Identifier, index=True)
    fetched_at: datetime = Field(default_factory=utc_now, sa_type=UtcTimestamp)
    sha256: str = Field(max_length=64)
    definition: dict[str, Any] = Field(sa_type=JsonDocument)


class ExperimentSnapshot(ExperimentSnapshotBase, table=True):
    """A GrowthBook experiment (variations, weights, phases) as fetched; stored once per
    distinct definition."""

    __tablename__ = "experiment_snapshots"
    __table_args__ = (
        sa.UniqueConstraint("experiment_id", "sha256", name="uq_experiment_snapshots_content"),
    )

    id: int | None = Field(default=None, primary_key=True)
