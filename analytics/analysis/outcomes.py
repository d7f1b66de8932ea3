"""Per-user guardrail outcomes over a time window, aggregated in the database.

A rollback stage is judged on what its users experienced while it ran: complaints, retries,
feedback and pushback. SQL sums them per user over the window; the guardrail statistics run on
one row per user (users, not interactions, are what the rollback assigns).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from analytics.db import rows_frame
from analytics.features.metrics import METRICS
from analytics.sqltypes import UtcTimestamp

# Guardrail metric -> (sum column, count column) of the outcome frame: a user's value is
# sum / count. Pushback is a feature of every prompt, so its denominator is every interaction.
GUARDRAIL_COLUMNS: dict[str, tuple[str, str]] = {
    "complaint_rate": ("complaint_sum", "complaint_n"),
    "retry_rate": ("retry_sum", "retry_n"),
    "feedback_score": ("feedback_sum", "feedback_n"),
    "pushback_rate": ("pushback_sum", "n"),
}
GUARDRAIL_METRICS: dict[str, int] = {
    metric: +1 if METRICS[metric].worse == "higher" else -1 for metric in GUARDRAIL_COLUMNS
}
"""Guardrail metric (data contract name) -> sign: +1 when higher is worse, -1 when lower is
(``MetricSpec.worse``)."""

OUTCOME_COLUMNS = (
    "user_id",
    "n",
    "active_days",
    "complaint_n",
    "complaint_sum",
    "retry_n",
    "retry_sum",
    "feedback_n",
    "feedback_sum",
    "pushback_sum",
)

# Ids per query: under SQLite's default limit of 32,766 bound variables, and few enough
# round trips that 50,000 users cost a handful of index-only range scans per chunk.
_CHUNK_USERS = 10_000
_MICROS_PER_DAY = 86_400_000_000


def _as_integer(column: str, dialect: str) -> str:
    # PostgreSQL sums booleans only after a cast (NULL stays NULL); SQLite stores 0/1.
    return f"i.{column}" if dialect == "sqlite" else f"CAST(i.{column} AS INTEGER)"


def _utc_day(dialect: str) -> str:
    if dialect == "sqlite":
        return f"(i.timestamp / {_MICROS_PER_DAY})"
    return "CAST(i.timestamp AT TIME ZONE 'UTC' AS DATE)"


def user_outcomes_sql(dialect: str) -> str:
    """Per user of ``:users`` with interactions in ``[:since, :until)``: the outcome sums."""
    complaint, retry = _as_integer("complaint", dialect), _as_integer("retry", dialect)
    return (
        "SELECT i.user_id AS user_id, count(*) AS n, "
        f"count(DISTINCT {_utc_day(dialect)}) AS active_days, "
        f"count(i.complaint) AS complaint_n, sum({complaint}) AS complaint_sum, "
        f"count(i.retry) AS retry_n, sum({retry}) AS retry_sum, "
        "count(i.feedback) AS feedback_n, sum(i.feedback) AS feedback_sum, "
        f"sum({_as_integer('has_pushback', dialect)}) AS pushback_sum "
        "FROM interactions i "
        "WHERE i.user_id IN :users AND i.timestamp >= :since AND i.timestamp < :until "
        "GROUP BY i.user_id"
    )


def load_user_outcomes(
    engine: sa.Engine, user_ids: Sequence[str], since: datetime, until: datetime
) -> pd.DataFrame:
    """One row per given user (in the given order, repeats dropped) with their outcome sums
    over the half-open window ``[since, until)``; users without interactions in it have zeros.

    Columns: ``user_id, n, active_days, complaint_n, complaint_sum, retry_n, retry_sum,
    feedback_n, feedback_sum, pushback_sum``, all counts and sums as ``int64``. ``n`` counts
    interactions, ``active_days`` distinct UTC calendar days with one, each ``*_n`` the
    interactions where that column is not NULL; ``pushback_sum`` counts prompts with pushback
    (NULL, before features are computed, counts as none). Naive datetimes are UTC.
    """
    if until < since:
        raise ValueError(f"the window ends ({until}) before it starts ({since})")
    users = list(dict.fromkeys(str(u) for u in user_ids))
    statement = sa.text(user_outcomes_sql(engine.dialect.name)).bindparams(
        sa.bindparam("users", expanding=True),
        sa.bindparam("since", type_=UtcTimestamp()),
        sa.bindparam("until", type_=UtcTimestamp()),
    )
    rows: list[sa.Row[tuple[object, ...]]] = []
    with engine.connect() as connection:
        for start in range(0, len(users), _CHUNK_USERS):
            chunk = users[start : start + _CHUNK_USERS]
            result = connection.execute(statement, {"users": chunk, "since": since, "until": until})
            rows.extend(result.all())
    found = rows_frame(rows, OUTCOME_COLUMNS)
    frame = pd.DataFrame({"user_id": pd.Series(users, dtype=object)})
    frame = frame.merge(found.astype({"user_id": object}), on="user_id", how="left")
    counts = list(OUTCOME_COLUMNS[1:])
    # Users with no interaction in the window have no row (NULL sums, too, where every value
    # was NULL): zero interactions and zero sums, never a dropped user.
    frame[counts] = frame[counts].astype("float64").fillna(0.0).astype("int64")
    return frame


def compute_user_metrics(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per user, each guardrail metric's value: the user's mean over the window.

    One row per row of ``outcomes`` (same order): ``user_id`` and one column per metric of
    :data:`GUARDRAIL_METRICS`, NaN where the user has no non-NULL value of it.
    """
    out = pd.DataFrame({"user_id": outcomes["user_id"].to_numpy()})
    for metric, (total, count) in GUARDRAIL_COLUMNS.items():
        sums = outcomes[total].to_numpy(dtype="float64")
        counts = outcomes[count].to_numpy(dtype="float64")
        with np.errstate(invalid="ignore", divide="ignore"):
            out[metric] = np.where(counts > 0, sums / counts, np.nan)
    return out
