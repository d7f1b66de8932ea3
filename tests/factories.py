"""Seeded builders of input files in every supported format."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from analytics.ingest.contract import EXPOSURES, INTERACTIONS

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
