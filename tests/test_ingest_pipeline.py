"""The pieces that make ingest fast keep its results: content digests taken from UTF-8 bytes
equal pandas' own, chunks are bounded in bytes as well as rows, and tables get fresh
statistics after a large ingest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from analytics.ingest.conflicts import content_columns, content_digests
from analytics.ingest.contract import INTERACTIONS
from analytics.ingest.readers import RawBatch
from analytics.ingest.runner import _chunks
from analytics.models import IngestKind
from tests.factories import interaction, write_rows
from tests.test_ingest_conflicts import validated
from tests.test_ingest_hostile import count, ingest


def pandas_digests(table: pa.Table) -> list[int]:
    """The digest as first written: every column Arrow-backed, hashed by pandas itself."""
    frame = pd.DataFrame(
        {
            name: pd.Series(pd.arrays.ArrowExtensionArray(_as_hashed(table.column(name))))
            for name in content_columns(INTERACTIONS)
        }
    )
    hashed = pd.util.hash_pandas_object(frame, index=False, categorize=False)
    return [int(v) for v in hashed.to_numpy(dtype=np.uint64).view(np.int64)]


def _as_hashed(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.int64())
    if pa.types.is_string(column.type):
        return column
    return column.cast(pa.float64())


text = st.one_of(st.none(), st.text(st.characters(exclude_characters="\x00"), max_size=40))


@given(
    st.lists(st.tuples(text, text, text), min_size=1, max_size=30),
    st.integers(min_value=1, max_value=7),
)
def test_digests_from_bytes_equal_pandas_own(
    values: list[tuple[str | None, ...]], cut: int
) -> None:
    rows = []
    for i, (prompt, response, session) in enumerate(values):
        rows.append(
            interaction(i, prompt=prompt or "p", response=response, session_id=session or None)
        )
    table = validated(rows)
    # In pieces, as a chunk made of several reader blocks would be.
    pieces = pa.concat_tables([table.slice(0, cut), table.slice(cut)])
    assert content_digests(pieces, INTERACTIONS).to_pylist() == pandas_digests(table)


def test_a_nul_in_text_still_gets_pandas_own_digest() -> None:
    table = validated([interaction(1), interaction(2, response=None)])
    index = table.schema.get_field_index("prompt")
    table = table.set_column(index, "prompt", pa.chunked_array([["with a \x00 NUL", "x"]]))
    assert content_digests(table, INTERACTIONS).to_pylist() == pandas_digests(table)


def batch(rows: int, width: int, first_line: int) -> RawBatch:
    table = pa.table({"prompt": ["x" * width] * rows})
    return RawBatch(table, np.arange(first_line, first_line + rows))


def test_chunks_stop_at_their_byte_bound_and_keep_every_row_in_order() -> None:
    batches = [batch(100, 1000, 1 + 100 * k) for k in range(10)]  # 1,000 rows of ~1 KB

    chunks = list(_chunks(iter(batches), 600, skip=50, chunk_bytes=250_000))

    sizes = [rows for _, rows in chunks]
    assert sum(sizes) == 950
    assert all(rows <= 600 for rows in sizes)
    assert all(chunk.table.nbytes < 250_000 + 100 * 1004 for chunk, _ in chunks)
    lines = np.concatenate([chunk.lines for chunk, _ in chunks])
    assert lines.tolist() == list(range(51, 1001))


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_large_ingest_leaves_fresh_statistics(engine: sa.Engine, tmp_path: Path) -> None:
    def estimated() -> float:
        with engine.connect() as connection:
            return float(
                connection.execute(
                    sa.text("SELECT reltuples FROM pg_class WHERE relname = 'interactions'")
                ).scalar_one()
            )

    ingest(engine, write_rows(tmp_path / "a.csv", [interaction(i) for i in range(300)]))
    assert estimated() == count(engine, "interactions") == 300
    # A tenth more rows or fewer: left to autovacuum.
    ingest(engine, write_rows(tmp_path / "b.csv", [interaction(i) for i in range(300, 320)]))
    assert estimated() == 300
    ingest(engine, write_rows(tmp_path / "c.csv", [interaction(i) for i in range(320, 400)]))
    assert estimated() == 400


def _stored_rows(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM interactions ORDER BY event_id"))
        return [tuple(v for k, v in r._mapping.items() if k != "ingest_run_id") for r in rows]


def _messy_rows() -> list[dict[str, object]]:
    """Users out of order, bad rows, and repeats of earlier chunks' keys: plain ones and one
    whose content differs (a conflict)."""
    rows = [interaction(i, user_id=f"u{(i * 7) % 5}") for i in range(60)]
    rows[5]["timestamp"] = "not a time"
    rows[17]["feedback"] = 7
    rows += [interaction(3, user_id="u1"), interaction(4, user_id="u3", prompt="rewritten")]
    return rows


def test_sqlite_chunks_in_index_order_store_what_file_order_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prepare_rows sorts a SQLite chunk by its widest index: the rows, counts and rejects
    (with their lines) are those of the file's order, on a first ingest and on a re-ingest."""
    from analytics.db import ensure_schema, get_engine
    from analytics.ingest import writers
    from tests.factories import INTERACTION_COLUMNS

    path = write_rows(tmp_path / "messy.csv", _messy_rows(), INTERACTION_COLUMNS)
    outcomes = []
    for name, order in [("file", ("event_id",)), ("index", ("user_id", "timestamp"))]:
        monkeypatch.setitem(writers._SQLITE_ORDER, IngestKind.interactions, order)
        engine = get_engine(f"sqlite:///{tmp_path / name}.db")
        ensure_schema(engine)
        first = ingest(engine, path, chunk_rows=20)
        again = ingest(engine, path, chunk_rows=20)
        with open(first.rejects_path or "", encoding="utf-8") as handle:
            rejects = handle.read()
        outcomes.append(
            (
                _stored_rows(engine),
                [
                    (s.rows_read, s.rows_inserted, s.rows_duplicate, s.rows_rejected)
                    for s in (first, again)
                ],
                rejects,
            )
        )
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][1][0] == (62, 58, 1, 3)  # 2 bad rows, a plain repeat, a conflicting one
    assert outcomes[1][1][1][1] == 0  # the re-ingest inserts nothing


def _storage(engine: sa.Engine, table: sa.Table) -> list[tuple[object, ...]]:
    """Each stored value with its SQLite storage class, in key order (JSON documents minified:
    SQLAlchemy's JSON type writes them with spaces)."""
    selected = ", ".join(
        f"typeof({c.name}), quote({f'json({c.name})' if isinstance(c.type, sa.JSON) else c.name})"
        for c in table.columns
    )
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(f"SELECT {selected} FROM {table.name} ORDER BY 2, 4, 6")
        return [tuple(row) for row in rows]


def test_sqlite_chunk_files_store_each_value_as_the_orm_binds_it(tmp_path: Path) -> None:
    """ADBC writes a chunk's Arrow columns to a file that SQLite merges (sqlite_chunks): every
    value must land with the storage class and value SQLAlchemy would have bound (flags as
    integers, instants as epoch microseconds, a whole latency still REAL, NULLs as NULL)."""
    from analytics.db import ensure_schema, get_engine
    from analytics.models import Exposure, IngestRun, Interaction
    from tests.factories import EXPOSURE_COLUMNS, INTERACTION_COLUMNS, exposure

    ingested = get_engine(f"sqlite:///{tmp_path / 'ingested.db'}")
    bound = get_engine(f"sqlite:///{tmp_path / 'bound.db'}")
    for engine in (ingested, bound):
        ensure_schema(engine)
    rows = [
        interaction(1, latency_ms=800.0, feedback=-1, complaint=1),
        interaction(2, response=None, session_id=None, latency_ms=None, feedback=None),
        interaction(3, prompt="naïve — ünïcode ✓", complaint=0, retry=1),
    ]
    ingest(ingested, write_rows(tmp_path / "i.csv", rows, INTERACTION_COLUMNS))
    exposures = [exposure(1), exposure(2, feature_key=None)]
    ingest(
        ingested,
        write_rows(tmp_path / "e.csv", exposures, EXPOSURE_COLUMNS),
        IngestKind.exposures,
    )
    # Read back and written again through SQLAlchemy's column types, which bind each value.
    with ingested.connect() as read, bound.begin() as write:
        for model in (IngestRun, Interaction, Exposure):
            table = model.__table__  # type: ignore[attr-defined]
            write.execute(
                sa.insert(table), [dict(r._mapping) for r in read.execute(sa.select(table))]
            )

    for model in (Interaction, Exposure):
        table = model.__table__  # type: ignore[attr-defined]
        assert _storage(ingested, table) == _storage(bound, table)
    assert count(ingested, "interactions") == 3


def test_sqlite_chunk_files_are_removed_however_the_ingest_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from analytics.db import ensure_schema, get_engine
    from analytics.ingest import runner

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    engine = get_engine(f"sqlite:///{tmp_path / 'a.db'}")
    ensure_schema(engine)
    path = write_rows(tmp_path / "a.csv", [interaction(i) for i in range(50)])

    assert ingest(engine, path, chunk_rows=10).rows_inserted == 50
    assert list(scratch.iterdir()) == []

    calls, original = [], runner.write_prepared

    def fails_third(connection: sa.Connection, prepared: object) -> int:
        calls.append(prepared)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return original(connection, prepared)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "write_prepared", fails_third)
    again = write_rows(tmp_path / "b.csv", [interaction(i) for i in range(50, 100)])
    with pytest.raises(RuntimeError, match="disk on fire"):
        ingest(engine, again, chunk_rows=10)
    assert list(scratch.iterdir()) == []
    assert count(engine, "interactions") == 70  # two chunks of the second file committed


def test_a_killed_ingests_scratch_directory_is_removed_by_the_next(tmp_path: Path) -> None:
    """A SIGKILLed ingest leaves its chunk files; a later one removes them once their process
    is gone and they have not changed for a while, and leaves a running ingest's alone."""
    import os
    import subprocess
    import sys

    from analytics.ingest.sqlite_chunks import ORPHAN_AFTER_SECONDS, PREFIX, remove_orphans

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(gone.stdout)
    orphan = tmp_path / f"{PREFIX}{dead_pid}-abc"
    running = tmp_path / f"{PREFIX}{os.getpid()}-def"
    for directory in (orphan, running):
        directory.mkdir()
        (directory / "chunk-000001.sqlite").write_bytes(b"x" * 100)
    unrelated = tmp_path / "aftershock-ingest-notes"
    unrelated.mkdir()

    now = orphan.stat().st_mtime
    assert remove_orphans(tmp_path, now=now + 5) == []  # too recent: maybe still writing
    assert remove_orphans(tmp_path, now=now + ORPHAN_AFTER_SECONDS + 1) == [orphan]
    assert not orphan.exists() and running.exists() and unrelated.exists()


def test_every_stored_row_names_a_run_that_exists(engine: sa.Engine, tmp_path: Path) -> None:
    """ingest_run_id is not a declared foreign key (analytics.models, PROVENANCE): every row an
    ingest stores, resumed or not, names the run that stored it."""
    from analytics.models import IngestStatus
    from tests.factories import EXPOSURE_COLUMNS, exposure
    from tests.test_ingest import Killed

    def kill_after_first_chunk(rows_done: int) -> None:
        raise Killed

    interactions = write_rows(tmp_path / "i.csv", [interaction(i) for i in range(30)])
    with pytest.raises(Killed):
        ingest(engine, interactions, chunk_rows=10, after_chunk=kill_after_first_chunk)
    resumed = ingest(engine, interactions, chunk_rows=10)
    exposures = write_rows(tmp_path / "e.csv", [exposure(i) for i in range(12)], EXPOSURE_COLUMNS)
    first = ingest(engine, exposures, IngestKind.exposures)

    assert resumed.resumed_from_row == 10 and resumed.status == IngestStatus.completed
    with engine.connect() as connection:
        for table, runs in (("interactions", {resumed.run_id}), ("exposures", {first.run_id})):
            stored = connection.execute(
                sa.text(
                    f"SELECT DISTINCT t.ingest_run_id, r.id FROM {table} t "
                    "LEFT JOIN ingest_runs r ON r.id = t.ingest_run_id"
                )
            ).all()
            assert {run for run, _ in stored} == runs
            assert all(found is not None for _, found in stored)
