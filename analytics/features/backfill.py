"""Compute the features of interactions stored before the feature columns existed.

New rows get their features at ingest; rows from an older schema (migration 0002 added the
columns) have NULLs until this runs. It reads the text once, in key order, a batch at a time.
"""

from __future__ import annotations

import pyarrow as pa
import sqlalchemy as sa

from analytics.features import compute_interaction_features
from analytics.models import Interaction


def missing_features(engine: sa.Engine) -> bool:
    """Whether any stored interaction lacks its features and has the text to compute them
    from (found through the narrow index; every row stored without its text got its features
    at ingest, analytics.ingest.retention)."""
    table = Interaction.__table__  # type: ignore[attr-defined]
    missing = sa.and_(table.c.prompt_length.is_(None), table.c.prompt.is_not(None))
    with engine.connect() as connection:
        return (
            connection.execute(sa.select(sa.literal(1)).where(missing).limit(1)).first() is not None
        )


def backfill_features(engine: sa.Engine, batch_rows: int = 20_000) -> int:
    """Fill the feature columns of every interaction that lacks them; return how many."""
    table = Interaction.__table__  # type: ignore[attr-defined]
    if not missing_features(engine):
        return 0
    done = 0
    last = ""
    while True:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(table.c.event_id, table.c.prompt, table.c.response)
                .where(
                    table.c.event_id > last,
                    table.c.prompt_length.is_(None),
                    table.c.prompt.is_not(None),
                )
                .order_by(table.c.event_id)
                .limit(batch_rows)
            ).all()
        if not rows:
            return done
        event_ids = [r[0] for r in rows]
        features = compute_interaction_features(
            pa.array([r[1] for r in rows], type=pa.string()),
            pa.array([r[2] for r in rows], type=pa.string()),
        )
        values = [
            {"key": event_id, **dict(zip(features.column_names, values, strict=True))}
            for event_id, values in zip(
                event_ids,
                zip(*(c.to_pylist() for c in features.columns), strict=True),
                strict=True,
            )
        ]
        with engine.begin() as connection:
            connection.execute(
                table.update()
                .where(table.c.event_id == sa.bindparam("key"))
                .values({name: sa.bindparam(name) for name in features.column_names}),
                values,
            )
        done += len(rows)
        last = event_ids[-1]
