"""Seeded builders: input files in every supported format, synthetic users for the planner,
and a stored rollback plan."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from analytics.ingest.contract import EXPOSURES, INTERACTIONS
from rollout.planner import Policy, choose, plan_document, plan_rollback
from rollout.risk import RiskParams, second_disruption_risk
from rollout.store import save_plan

INTERACTION_COLUMNS = INTERACTIONS.columns
EXPOSURE_COLUMNS = EXPOSURES.columns


def interaction(i: int, **overrides: Any) -> dict[str, Any]:
    """A valid interaction row; ``i`` makes its id, user and time distinct."""
    row: dict[str, Any] = {
        "event_id": f"evt-{i:06d}",
        "user_id": f"u{i % 7:03d}",
        "timestamp": f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00.{i % 1000:03d}Z",
        "prompt": f"Could you please explain item {i}?\nI think it matters.",
        "response": f"You're absolutely right! Item {i} is explained here.",
        "model_version": "chat-base-1",
        "session_id": f"s{i // 3}",
        "latency_ms": 800.5 + i,
        "feedback": (i % 3) - 1,
        "complaint": i % 2,
        "retry": 0,
    }
    row.update(overrides)
    return row


def exposure(i: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "user_id": f"u{i:03d}",
        "timestamp": f"2026-10-{1 + i % 28:02d}T10:00:00Z",
        "experiment_id": "chat-model-upgrade",
        "variation_id": str(i % 2),
        "feature_key": "chat-model",
        "attributes": {"id": f"u{i:03d}", "plan": "pro"},
    }
    row.update(overrides)
    return row


def write_rows(
    path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> Path:
    """Write ``rows`` in the format named by ``path`` (.csv/.jsonl/.parquet, optional .gz)."""
    columns = list(columns or (rows[0].keys() if rows else INTERACTION_COLUMNS))
    suffixes = path.suffixes
    compressed = suffixes[-1] == ".gz"
    fmt = suffixes[-2] if compressed else suffixes[-1]
    if fmt == ".parquet":
        buffer = io.BytesIO()
        table = pa.table({c: [_cell(r.get(c)) for r in rows] for c in columns})
        pq.write_table(table, buffer)
        data = buffer.getvalue()
    elif fmt == ".jsonl":
        data = b"".join(orjson.dumps({c: r[c] for c in columns if c in r}) + b"\n" for r in rows)
    else:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else _cell(r.get(c)) for c in columns])
        data = text.getvalue().encode()
    path.write_bytes(gzip.compress(data, mtime=0) if compressed else data)
    return path


def _cell(value: Any) -> Any:
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return value


LABEL_EVIDENCE = {  # typical evidence of adaptation by label (rollout.risk), for synthetic users
    "unadapted": 0.05,
    "insufficient_data": 0.4,
    "new": 0.4,
    "partial": 0.6,
    "adapted": 0.97,
}


def make_users(n: int = 3000, seed: int = 1, labels: list[str] | None = None) -> pd.DataFrame:
    """Treated users as the planner reads them: a label, exposure, risk and baselines."""
    rng = np.random.default_rng(seed)
    if labels is None:
        labels = list(
            rng.choice(list(LABEL_EVIDENCE), n, p=[0.3, 0.15, 0.2, 0.1, 0.25]).astype(str)
        )
    n = len(labels)
    days = rng.uniform(0, 28, n)
    evidence = np.array([LABEL_EVIDENCE[label] for label in labels])
    n_post = rng.integers(1, 60, n)
    risk = second_disruption_risk(evidence, days, n_post, RiskParams(2.6))
    return pd.DataFrame(
        {
            "user_id": [f"u{i:05d}" for i in range(n)],
            "adaptation_label": labels,
            "days_exposed": days,
            "evidence": evidence,
            "n_post": n_post,
            "risk": risk,
            "daily_active": rng.uniform(0.2, 0.8, n),
            "complaint_rate": rng.beta(1, 20, n),
            "retry_rate": rng.beta(1, 10, n),
            "feedback_score": rng.uniform(-0.2, 0.6, n),
            "pushback_rate": rng.beta(1, 8, n),
        }
    )


def stored_plan(engine: sa.Engine, n: int = 1200) -> int:
    """An adaptation-aware rollback plan of ``chat-model`` for ``n`` synthetic users (seed 8),
    made on 2026-11-16 and saved without an analysis run; its id."""
    now = datetime(2026, 11, 16, tzinfo=UTC)
    plan = choose(
        plan_rollback(
            make_users(n=n, seed=8),
            experiment_id="chat-model-upgrade",
            feature_key="chat-model",
            policy=Policy(),
            rollback_value="old-model",
            current_value="new-model",
            as_of=now,
            created_at=now,
        ),
        "adaptation_aware",
    )
    return save_plan(
        engine, document=plan_document(plan), members=plan.members, analysis_run_id=None
    )
