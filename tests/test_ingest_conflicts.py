"""Conflicting duplicates through content digests (analytics.ingest.conflicts): found across
files, chunks and formats, for exposures as for interactions; rows stored before digests
existed still compared; a re-ingest never reads the text back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from analytics.ingest.conflicts import content_digests
from analytics.ingest.contract import INTERACTIONS
from analytics.ingest.readers import RawBatch
from analytics.ingest.validate import check_batch
from analytics.models import IngestKind
from tests.factories import EXPOSURE_COLUMNS, INTERACTION_COLUMNS, exposure, interaction, write_rows
from tests.test_ingest_hostile import SPAN, count, ingest, reasons


def validated(rows: list[dict[str, Any]]) -> pa.Table:
    """Interaction rows through the same validation as ingest."""
    table = pa.Table.from_pylist(rows)
    batch = RawBatch(table, np.arange(2, table.num_rows + 2))
    return check_batch(batch, INTERACTIONS, SPAN).table


def test_digests_are_pinned_so_a_library_change_cannot_flag_every_stored_row() -> None:
    table = validated([interaction(1), interaction(2)])
    # Computed once with pandas' SipHash; if this changes, stored digests no longer match.
    assert content_digests(table, INTERACTIONS).to_pylist() == PINNED


PINNED = [-6611986840593320128, -4869450939707796835]


def test_a_digest_depends_on_every_content_column_and_not_on_the_key() -> None:
    base = interaction(1)
    digest = content_digests(validated([base]), INTERACTIONS)[0].as_py()
    assert (
        content_digests(validated([{**base, "event_id": "other"}]), INTERACTIONS)[0].as_py()
        == digest
    )
    for column, value in [
        ("user_id", "someone"),
        ("timestamp", "2026-10-02T00:00:00Z"),
        ("prompt", base["prompt"] + " "),
        ("response", None),
        ("latency_ms", 1.0),
        ("feedback", None),
        ("complaint", 1 - base["complaint"]),
    ]:
        changed = validated([{**base, column: value}])
        assert content_digests(changed, INTERACTIONS)[0].as_py() != digest, column


def test_the_same_rows_in_another_format_are_plain_duplicates(
    engine: sa.Engine, tmp_path: Path
) -> None:
    rows = [interaction(i) for i in range(8)]
    ingest(engine, write_rows(tmp_path / "a.csv", rows, INTERACTION_COLUMNS))
    for fmt in ("jsonl", "parquet", "csv.gz"):
        summary = ingest(engine, write_rows(tmp_path / f"b.{fmt}", rows, INTERACTION_COLUMNS))
        assert (summary.rows_duplicate, summary.rows_rejected) == (8, 0), fmt


def test_interaction_conflicts_are_found_across_chunks(engine: sa.Engine, tmp_path: Path) -> None:
    rows = [interaction(i) for i in range(6)]
    rows.append(interaction(1, prompt="rewritten"))  # a later chunk repeats an earlier one
    summary = ingest(
        engine, write_rows(tmp_path / "a.jsonl", rows, INTERACTION_COLUMNS), chunk_rows=2
    )
    assert (summary.rows_inserted, summary.rows_duplicate, summary.rows_rejected) == (6, 0, 1)
    assert (
        "evt-000001 was already seen with a different prompt" in reasons(summary)[7]
    )  # JSON Lines: row 6 on line 7


@pytest.mark.parametrize("chunk_rows", [2, 1000])
def test_exposure_conflicts_are_found_across_chunks_and_files(
    engine: sa.Engine, tmp_path: Path, chunk_rows: int
) -> None:
    rows = [exposure(i) for i in range(5)]
    rows.append(exposure(1, feature_key="other-flag"))
    summary = ingest(
        engine,
        write_rows(tmp_path / "a.jsonl", rows, EXPOSURE_COLUMNS),
        IngestKind.exposures,
        chunk_rows=chunk_rows,
    )
    assert (summary.rows_inserted, summary.rows_rejected) == (5, 1)
    assert (
        "chat-model-upgrade u001 2026-10-02T10:00:00Z 1 was already seen with a different "
        "feature_key" in reasons(summary)[6]
    )

    later = [exposure(i) for i in range(5)]
    later[2]["attributes"] = {"plan": "free"}
    later[3]["attributes"] = dict(reversed(list(later[3]["attributes"].items())))  # same object
    summary = ingest(
        engine, write_rows(tmp_path / "b.jsonl", later, EXPOSURE_COLUMNS), IngestKind.exposures
    )
    assert (summary.rows_inserted, summary.rows_duplicate, summary.rows_rejected) == (0, 4, 1)
    assert list(reasons(summary)) == [3]
    assert "different attributes" in reasons(summary)[3]
    assert count(engine, "exposures") == 5


def test_rows_stored_before_digests_are_compared_whole(engine: sa.Engine, tmp_path: Path) -> None:
    rows = [interaction(i) for i in range(4)]
    ingest(engine, write_rows(tmp_path / "a.csv", rows, INTERACTION_COLUMNS))
    with engine.begin() as connection:  # as migration 0007 leaves earlier rows
        connection.execute(sa.text("UPDATE interactions SET content_digest = NULL"))
    later = [interaction(i) for i in range(4)]
    later[2]["feedback"] = None
    summary = ingest(engine, write_rows(tmp_path / "b.csv", later, INTERACTION_COLUMNS))
    assert (summary.rows_duplicate, summary.rows_rejected) == (3, 1)
    assert (
        "evt-000002 was already seen with a different feedback" in reasons(summary)[6]
    )  # 2 lines a row


def test_a_reingest_does_not_read_the_text_back(engine: sa.Engine, tmp_path: Path) -> None:
    rows = [interaction(i) for i in range(50)]
    path = write_rows(tmp_path / "a.csv", rows, INTERACTION_COLUMNS)
    ingest(engine, path)
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        assert ingest(engine, path).rows_duplicate == 50
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert any("content_digest" in s for s in reads)
    assert not any("prompt" in s or "response" in s for s in reads)
