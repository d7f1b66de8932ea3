"""What the database holds, in plain SQL: row counts, exposed users per experiment, the last
ingest runs (``aftershock status``, the API's experiment list).

Apart from :mod:`analytics.store` because it needs neither the ORM models nor the typed
documents: a command that only counts rows starts without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from analytics.db import ensure_schema


def count_exposed_users(engine: sa.Engine) -> dict[str, dict[str, int]]:
    """Per experiment (sorted) and variation, the users with a stored exposure."""
    ensure_schema(engine)
    query = sa.text(
        "SELECT experiment_id, variation_id, count(DISTINCT user_id) FROM exposures "
        "GROUP BY experiment_id, variation_id ORDER BY experiment_id, variation_id"
    )
    users: dict[str, dict[str, int]] = {}
    with engine.connect() as connection:
        for experiment_id, variation, count in connection.execute(query):
            users.setdefault(str(experiment_id), {})[str(variation)] = int(count)
    return users


@dataclass(frozen=True)
class DatabaseSummary:
    """What the database holds (``aftershock status``): rows per table, users per experiment
    and variation, and the latest ingest runs, newest first."""

    row_counts: dict[str, int]
    experiments: tuple[tuple[str, str, int], ...]  # experiment_id, variation_id, users
    # id, kind, file_name, status, rows_inserted, rows_duplicate, rows_rejected
    last_ingests: tuple[tuple[int, str, str, str, int, int, int], ...]


def load_database_summary(engine: sa.Engine, *, last_ingests: int = 5) -> DatabaseSummary:
    """Row counts, the experiments with exposures and their users, the last ingest runs."""
    ensure_schema(engine)
    tables = ("exposures", "interactions", "ingest_runs", "ingest_rejects")
    with engine.connect() as connection:
        counts = {
            name: int(connection.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one())
            for name in tables
        }
        runs = connection.execute(
            sa.text(
                "SELECT id, kind, file_name, status, rows_inserted, rows_duplicate, rows_rejected "
                "FROM ingest_runs ORDER BY id DESC LIMIT :n"
            ),
            {"n": last_ingests},
        ).all()
    return DatabaseSummary(
        row_counts=counts,
        experiments=tuple(
            (experiment, variation, users)
            for experiment, per_variation in count_exposed_users(engine).items()
            for variation, users in per_variation.items()
        ),
        last_ingests=tuple(
            (int(i), str(kind), str(name), str(status), int(ins), int(dup), int(rej))
            for i, kind, name, status, ins, dup, rej in runs
        ),
    )
