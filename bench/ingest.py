"""Ingest throughput and peak memory, one measurement per process.

``python -m bench.ingest MODE ...`` prints one JSON line:
- ``aftershock URL FILE [STORE_TEXT]``: the real ingest (both passes, validation, rejects,
  checkpoints), keeping the text of a sample of users (the default) or, with ``all``, of
  every interaction;
- ``naive URL FILE ROWS``: the baseline, one ORM object per row, on the first ROWS rows;
- ``ceiling URL FILE [after]``: the database's own bulk path with no checks at all
  (ADBC chunk files merged by SQLite, COPY of ready CSV on PostgreSQL), to show what the
  engine allows; with ``after``, into the table without its indexes, built after the load;
- ``analyze URL FILE EXPOSURES``: both files loaded (not timed), then a full analysis;
- ``aftershock-unindexed URL FILE``: the real ingest (text of a sample of users) into the
  table without its droppable indexes, then the indexes built: what any design that builds
  them after a large load could at best reach;
- ``stages FILE``: the CPU seconds of each stage of the ingest's own work on the file, no
  database involved, one stage after another (Arrow's kernels on their threads as in an
  ingest): what the machine must spend whatever the write path;
- ``parse FILE``: ``pyarrow.csv.read_csv`` of the file, the yardstick of ``pipeline``;
- ``pipeline URL FILE EXPOSURES``: ingest both files, then analyze, timed together (the
  Evidently yardstick beside it is ``bench.evidently``).
"""

from __future__ import annotations

import csv
import io
import json
import resource
import sys
import time
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv

# Each mode imports what it uses: the process's peak memory is the measurement, and an
# ingest row must not carry the analysis pipeline's libraries.


def peak_mb() -> float:
    """This process's peak resident memory. (ru_maxrss would do, but Linux carries it over
    from the parent across exec, so a child would report the parent's peak.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_aftershock(url: str, path: Path, store_text: str = "sample") -> dict[str, float]:
    from analytics.db import ensure_schema, get_engine
    from analytics.ingest.retention import TextRetention
    from analytics.ingest.runner import ingest_file
    from analytics.models import IngestKind

    engine = get_engine(url)
    ensure_schema(engine)
    start = time.perf_counter()
    summary = ingest_file(
        path,
        IngestKind.interactions,
        engine=engine,
        rejects_dir=path.parent / "rejects",
        retention=TextRetention(store_text),  # type: ignore[arg-type]
    )
    return {"rows": summary.rows_inserted, "seconds": time.perf_counter() - start}


def run_unindexed(url: str, path: Path) -> dict[str, float]:
    from analytics.db import ensure_schema, get_engine

    engine = get_engine(url)
    ensure_schema(engine)
    rebuild = _drop_indexes(engine)
    start = time.perf_counter()
    result = run_aftershock(url, path)
    built = time.perf_counter()
    with engine.begin() as connection:
        for statement in rebuild:
            connection.exec_driver_sql(statement)
    end = time.perf_counter()
    return {"rows": result["rows"], "seconds": end - start, "index_seconds": end - built}


def run_stages(path: Path) -> dict[str, float]:
    """CPU seconds (all threads) of each stage of an ingest of ``path`` without a database:
    the whole-file check, then per chunk reading, validation, de-duplication, digests,
    features, text retention and each engine's preparation (SQLite: the chunk file; PostgreSQL:
    the CSV for COPY)."""
    import tempfile

    from analytics.ingest import runner, writers
    from analytics.ingest.conflicts import content_digests
    from analytics.ingest.contract import INTERACTIONS
    from analytics.ingest.readers import detect_format, read_batches
    from analytics.ingest.retention import TextRetention
    from analytics.ingest.validate import TimestampRange, check_batch
    from analytics.settings import get_settings

    settings = get_settings()
    span = TimestampRange.ending_days_after(
        settings.timestamp_min, settings.timestamp_max_days_ahead
    )
    file_format, retention = detect_format(path), TextRetention("sample")
    seconds: dict[str, float] = {}

    def timed(stage: str, work: Any, *args: Any) -> Any:
        start = time.process_time()
        result = work(*args)
        seconds[stage] = seconds.get(stage, 0.0) + time.process_time() - start
        return result

    wall = time.perf_counter()
    timed(
        "check_whole_file",
        runner._check_whole_file,
        path,
        file_format,
        INTERACTIONS,
        False,
        None,
        span,
    )
    chunks = runner._chunks(read_batches(path, file_format, INTERACTIONS), 50_000, skip=0)
    rows = 0
    with tempfile.TemporaryDirectory() as scratch:
        while (chunk := timed("read", next, chunks, None)) is not None:
            checked = timed("validate", check_batch, chunk[0], INTERACTIONS, span)
            unique, _ = timed(
                "deduplicate", writers.drop_repeated_keys, checked.table, INTERACTIONS
            )
            timed("digests", content_digests, unique, INTERACTIONS)
            unique = timed("features", runner.with_features, unique)
            unique = timed("retention", retention.apply, unique)
            for dialect in ("sqlite", "postgresql"):
                prepared = timed(
                    f"prepare_{dialect}",
                    writers.prepare_rows,
                    dialect,
                    INTERACTIONS,
                    unique,
                    1,
                    Path(scratch),
                )
                if dialect == "sqlite":
                    Path(prepared.payload).unlink()
            rows += unique.num_rows
    return {"rows": rows, "seconds": time.perf_counter() - wall, **seconds}


def run_naive(url: str, path: Path, rows: int) -> dict[str, float]:
    from sqlmodel import Session

    from analytics.db import ensure_schema, get_engine
    from analytics.models import Interaction

    engine = get_engine(url)
    ensure_schema(engine)
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as handle:
        records = list(islice(csv.DictReader(handle), rows))
    start = time.perf_counter()
    with Session(engine) as session:
        for i, record in enumerate(records, start=1):
            session.add(
                Interaction(
                    event_id=record["event_id"],
                    user_id=record["user_id"],
                    timestamp=datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")),
                    prompt=record["prompt"],
                    response=record["response"] or None,
                    model_version=record["model_version"] or None,
                    session_id=record["session_id"] or None,
                    latency_ms=float(record["latency_ms"]) if record["latency_ms"] else None,
                    feedback=int(record["feedback"]) if record["feedback"] else None,
                    complaint=record["complaint"] == "1",
                    retry=record["retry"] == "1",
                )
            )
            if i % 1000 == 0:
                session.commit()
        session.commit()
    return {"rows": len(records), "seconds": time.perf_counter() - start}


def run_ceiling(url: str, path: Path, indexes: str = "kept") -> dict[str, float]:
    """The engine's bulk path on data prepared beforehand (not timed: parsing, validation,
    features): the same rows and columns Aftershock stores, inserted with nothing else to do.

    With ``indexes="after"``, the table's indexes are dropped first and built after the load
    (timed): the secondary index on SQLite, whose primary key is part of the table, and the
    primary key too on PostgreSQL."""
    from analytics.db import ensure_schema, get_engine
    from analytics.ingest.contract import INTERACTIONS
    from analytics.ingest.runner import with_features

    engine = get_engine(url)
    ensure_schema(engine)
    table = pa_csv.read_csv(
        path,
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={"timestamp": pa.timestamp("us", "UTC")}
        ),
    )
    columns = list(INTERACTIONS.columns)
    table = with_features(table.select(columns))  # the same columns Aftershock stores
    columns = table.column_names
    chunk = 50_000
    rebuild = _drop_indexes(engine) if indexes == "after" else []
    if engine.dialect.name == "sqlite":
        # Aftershock's own path (analytics.ingest.sqlite_chunks): each chunk written to a file
        # by ADBC, then merged by SQLite; both timed.
        import tempfile

        from sqlmodel import Session

        from analytics.ingest.sqlite_chunks import attached, merge_sql, write_chunk_file
        from analytics.models import IngestKind, IngestRun

        with Session(engine) as session:  # the rows' run, which they refer to
            run = IngestRun(kind=IngestKind.interactions, file_name="", sha256="", format="csv")
            session.add(run)
            session.commit()
            run_id = run.id
        table = table.set_column(2, "timestamp", table.column(2).cast(pa.int64()))
        raw = engine.raw_connection()
        driver = raw.driver_connection
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            for k in range(0, table.num_rows, chunk):
                path = write_chunk_file(table.slice(k, chunk), Path(scratch))
                with attached(driver, path):
                    driver.execute(merge_sql("interactions", columns, run_id))
                    driver.commit()
    else:
        payloads = []
        for k in range(0, table.num_rows, chunk):
            buffer = io.BytesIO()
            pa_csv.write_csv(
                table.slice(k, chunk),
                buffer,
                write_options=pa_csv.WriteOptions(include_header=False),
            )
            payloads.append(buffer.getvalue())
        raw = engine.raw_connection()
        driver = raw.driver_connection
        start = time.perf_counter()
        for payload in payloads:
            with driver.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
                with cursor.copy(
                    f"COPY interactions ({', '.join(columns)}) FROM STDIN (FORMAT csv)"
                ) as copy:
                    copy.write(payload)
            driver.commit()
    if rebuild:
        with engine.begin() as connection:
            for statement in rebuild:
                connection.exec_driver_sql(statement)
    return {"rows": table.num_rows, "seconds": time.perf_counter() - start}


def _drop_indexes(engine: Any) -> list[str]:
    """Drop the interactions table's indexes that can be dropped; the statements that make
    them again."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            name, sql = connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                "AND tbl_name = 'interactions' AND sql IS NOT NULL"
            ).one()
            connection.exec_driver_sql(f"DROP INDEX {name}")
            return [sql]
        index = connection.exec_driver_sql(
            "SELECT pg_get_indexdef('ix_interactions_user_time_metrics'::regclass)"
        ).scalar_one()
        connection.exec_driver_sql("DROP INDEX ix_interactions_user_time_metrics")
        connection.exec_driver_sql("ALTER TABLE interactions DROP CONSTRAINT interactions_pkey")
        return [
            "ALTER TABLE interactions ADD CONSTRAINT interactions_pkey PRIMARY KEY (event_id)",
            index,
        ]


def run_analyze(url: str, interactions: Path, exposures: Path) -> dict[str, float]:
    """Load both files (not timed), then time a full analysis of the demo experiment."""
    from analytics.analysis.params import AnalysisParams
    from analytics.analysis.pipeline import run_analysis
    from analytics.db import ensure_schema, get_engine
    from analytics.ingest.runner import ingest_file
    from analytics.models import IngestKind
    from analytics.store import save_analysis

    engine = get_engine(url)
    ensure_schema(engine)
    for path, kind in ((exposures, IngestKind.exposures), (interactions, IngestKind.interactions)):
        ingest_file(path, kind, engine=engine, rejects_dir=path.parent / "rejects")
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")  # what autovacuum does after a load
    baseline = peak_mb()
    start = time.perf_counter()
    result = run_analysis(engine, AnalysisParams("chat-model-upgrade"))
    save_analysis(engine, result)
    seconds = time.perf_counter() - start
    return {"rows": float(len(result.users)), "seconds": seconds, "load_peak_mb": baseline}


def run_parse(path: Path) -> dict[str, float]:
    """``pyarrow.csv.read_csv`` of the file, types inferred, as a user of pyarrow would call
    it (quoted values span lines in this file, so ``newlines_in_values`` is on): what reading
    the file costs before anything is checked, computed or stored."""
    start = time.perf_counter()
    table = pa_csv.read_csv(path, parse_options=pa_csv.ParseOptions(newlines_in_values=True))
    return {"rows": table.num_rows, "seconds": time.perf_counter() - start}


def run_pipeline(url: str, interactions: Path, exposures: Path) -> dict[str, float]:
    """``aftershock ingest exposures``, ``aftershock ingest interactions`` and ``aftershock
    analyze`` (the run stored) on an empty database, timed together, as a user runs them."""
    from analytics.analysis.params import AnalysisParams
    from analytics.analysis.pipeline import run_analysis
    from analytics.db import ensure_schema, get_engine
    from analytics.ingest.runner import ingest_file
    from analytics.models import IngestKind
    from analytics.store import save_analysis

    engine = get_engine(url)
    ensure_schema(engine)
    rejects = interactions.parent / "rejects"
    start = time.perf_counter()
    ingest_file(exposures, IngestKind.exposures, engine=engine, rejects_dir=rejects)
    summary = ingest_file(interactions, IngestKind.interactions, engine=engine, rejects_dir=rejects)
    ingested = time.perf_counter()
    save_analysis(engine, run_analysis(engine, AnalysisParams("chat-model-upgrade")))
    end = time.perf_counter()
    return {
        "rows": summary.rows_inserted,
        "seconds": end - start,
        "ingest_seconds": ingested - start,
        "analyze_seconds": end - ingested,
    }


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "aftershock":
        result = run_aftershock(args[0], Path(args[1]), *args[2:3])
    elif mode == "analyze":
        result = run_analyze(args[0], Path(args[1]), Path(args[2]))
    elif mode == "naive":
        result = run_naive(args[0], Path(args[1]), int(args[2]))
    elif mode == "ceiling":
        result = run_ceiling(args[0], Path(args[1]), *args[2:3])
    elif mode == "aftershock-unindexed":
        result = run_unindexed(args[0], Path(args[1]))
    elif mode == "stages":
        result = run_stages(Path(args[0]))
    elif mode == "parse":
        result = run_parse(Path(args[0]))
    elif mode == "pipeline":
        result = run_pipeline(args[0], Path(args[1]), Path(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    result["peak_mb"] = peak_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
