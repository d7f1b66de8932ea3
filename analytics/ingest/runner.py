"""Ingest one file: check it whole, then write it in committed, resumable chunks.

Pass 1 reads the whole file (hashing it) without writing: a file that cannot be parsed, lacks
a required column or, with ``strict``, has any bad row is refused before anything is written.
Pass 2 validates and writes chunks of about ``chunk_rows`` rows; each chunk's rows, rejects and
the run's checkpoint (``rows_done``) are committed in one transaction. A run killed halfway is
resumed by ingesting the same file again: the new call finds the unfinished run by the file's
SHA-256 and continues after its checkpoint, so nothing is written twice and nothing is lost.
"""

from __future__ import annotations

import csv
import logging
import os
import random
import stat
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlmodel import Session, col, select

from analytics.db import ensure_schema
from analytics.errors import IngestError
from analytics.features import compute_interaction_features
from analytics.ingest.conflicts import (
    DIGEST_COLUMN,
    Conflict,
    content_digests,
    find_repeated_conflicts,
    find_stored_conflicts,
)
from analytics.ingest.contract import CONTRACTS, InputContract
from analytics.ingest.locks import exclusive_ingest
from analytics.ingest.prefetch import prefetch
from analytics.ingest.readers import (
    FileFormat,
    HashingReader,
    RawBatch,
    detect_format,
    read_batches,
)
from analytics.ingest.retention import TextRetention
from analytics.ingest.sqlite_chunks import scratch_directory
from analytics.ingest.statistics import refresh_statistics
from analytics.ingest.validate import CheckedBatch, Reject, TimestampRange, check_batch
from analytics.ingest.writers import (
    PreparedRows,
    drop_repeated_keys,
    prepare_rows,
    ready_to_write,
    write_prepared,
)
from analytics.models import IngestKind, IngestReject, IngestRun, IngestStatus, utc_now
from analytics.settings import get_settings

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What an ingest reports as it goes (the CLI draws a bar from it)."""

    def phase(self, description: str, total: int | None) -> None: ...

    def advance(self, amount: int) -> None: ...


@dataclass(frozen=True)
class IngestSummary:
    run_id: int
    file: str
    kind: IngestKind
    status: IngestStatus
    rows_read: int
    rows_inserted: int
    rows_duplicate: int
    rows_rejected: int
    rows_blank: int
    resumed_from_row: int
    rejects_path: str | None
    top_reject_reasons: list[tuple[str, str, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Precheck:
    sha256: str
    rows: int
    warnings: list[str]


@dataclass(frozen=True)
class _Source:
    """The file pass 2 writes, and how its rows are cut, checked and kept."""

    path: Path
    file_format: FileFormat
    contract: InputContract
    chunk_rows: int
    timestamps: TimestampRange
    retention: TextRetention


def ingest_file(
    path: Path,
    kind: IngestKind,
    *,
    engine: sa.Engine,
    rejects_dir: Path,
    strict: bool = False,
    chunk_rows: int = 50_000,
    progress: Progress | None = None,
    after_chunk: Callable[[int], None] | None = None,
    timestamps: TimestampRange | None = None,
    retention: TextRetention | None = None,
) -> IngestSummary:
    """Ingest ``path`` as ``kind`` and return what happened.

    Raises :class:`IngestError` (recording a ``refused`` run) when the file is refused.
    ``after_chunk`` is called with the checkpoint after each committed chunk. Two ingests of
    the same file never run at once (:mod:`analytics.ingest.locks`). ``timestamps`` and
    ``retention`` (which interactions keep their text) default to the settings'.
    """
    ensure_schema(engine)
    contract = CONTRACTS[kind]
    settings = get_settings()
    if timestamps is None:
        timestamps = TimestampRange.ending_days_after(
            settings.timestamp_min, settings.timestamp_max_days_ahead
        )
    if retention is None:
        retention = TextRetention(settings.store_text, settings.text_sample_share)
    if not path.is_file():
        raise IngestError(path, _not_a_file(path))
    file_format = detect_format(path)
    try:
        precheck = _check_whole_file(path, file_format, contract, strict, progress, timestamps)
    except IngestError as exc:
        _record_refusal(engine, path, kind, file_format, strict, exc)
        raise
    except Exception as exc:  # nothing is written yet: refuse, saying what broke
        error = IngestError(path, f"cannot read the file: {type(exc).__name__}: {exc}")
        _record_refusal(engine, path, kind, file_format, strict, error)
        raise error from exc
    with exclusive_ingest(engine, precheck.sha256, path):
        run = _start_or_resume(engine, path, kind, file_format, strict, precheck.sha256)
        assert run.id is not None
        try:
            source = _Source(path, file_format, contract, chunk_rows, timestamps, retention)
            return _write_and_finish(
                engine, source, run, precheck, rejects_dir, progress, after_chunk
            )
        except IngestError as exc:
            _mark_failed(engine, run.id, str(exc))
            raise
        except Exception as exc:
            # The chunks committed so far stay (each is whole); the run says why it stopped.
            _mark_failed(engine, run.id, f"{path}: {type(exc).__name__}: {exc}")
            raise


def _not_a_file(path: Path) -> str:
    """Why ``path`` cannot be ingested: it is missing, or something other than a file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ]
    what = next((name for test, name in kinds if test(mode)), "something other than a file")
    # A file is read twice (checked whole, then written), so a stream cannot be ingested.
    return f"is {what}, not a regular file; give the path of a file"


def _write_and_finish(
    engine: sa.Engine,
    source: _Source,
    run: IngestRun,
    precheck: _Precheck,
    rejects_dir: Path,
    progress: Progress | None,
    after_chunk: Callable[[int], None] | None,
) -> IngestSummary:
    assert run.id is not None
    path = source.path
    resumed_from = run.rows_done
    if progress:
        progress.phase(f"writing {path.name}", precheck.rows)
        progress.advance(resumed_from)
    try:
        done = _write_chunks(engine, source, run, progress, after_chunk)
    except IngestError as exc:  # pass 1 read it whole, so the file changed since
        raise IngestError(
            path,
            f"the file changed during the ingest: {exc.message}",
            line=exc.line,
            column=exc.column,
            byte=exc.byte,
        ) from exc
    if done != precheck.rows:
        raise IngestError(
            path,
            f"the file changed during the ingest ({precheck.rows:,} rows when checked, "
            f"{done:,} when written); the rows of run {run.id} that were written stay, "
            "ingest the file again to complete it",
        )
    return _finish(engine, run.id, path, precheck, rejects_dir, resumed_from)


def _write_chunks(
    engine: sa.Engine,
    source: _Source,
    run: IngestRun,
    progress: Progress | None,
    after_chunk: Callable[[int], None] | None,
) -> int:
    """Pass 2: commit every chunk after the run's checkpoint; return the rows done."""
    assert run.id is not None
    done = run.rows_done
    # SQLite's chunks go through files (analytics.ingest.sqlite_chunks), removed with their
    # directory however the ingest ends. Closing the chunks first stops the thread writing them.
    scratch = scratch_directory() if engine.dialect.name == "sqlite" else nullcontext(None)
    with scratch as directory:
        chunks = _prepared_chunks(engine, source, run, directory)
        with closing(chunks):
            for chunk in chunks:
                _commit_chunk(engine, run.id, chunk)
                done += chunk.raw_rows
                if progress:
                    progress.advance(chunk.raw_rows)
                if after_chunk:
                    after_chunk(done)
                del chunk
                # Arrow's allocator keeps freed pages for reuse; hand them back so that memory
                # stays flat over a long file.
                pa.default_memory_pool().release_unused()
    return done


def with_features(rows: pa.Table) -> pa.Table:
    """Interactions with their features (analytics.features), computed while the text is in
    memory so that no analysis reads it again."""
    features = compute_interaction_features(rows.column("prompt"), rows.column("response"))
    for name in features.column_names:
        rows = rows.append_column(name, features.column(name))
    return rows


def _prepared_chunks(
    engine: sa.Engine, source: _Source, run: IngestRun, scratch: Path | None
) -> Generator[_PreparedChunk, None, None]:
    """Pass 2's chunks after the run's checkpoint: validated, deduplicated, ready to write
    (SQLite's in files in ``scratch``)."""
    assert run.id is not None
    run_id = run.id
    contract, timestamps, retention = source.contract, source.timestamps, source.retention

    def validated(raw_chunks: Iterator[tuple[RawBatch, int]]) -> Iterator[_Chunk]:
        for raw_chunk, raw_rows in raw_chunks:
            checked = check_batch(raw_chunk, contract, timestamps)
            del raw_chunk
            unique, keep = drop_repeated_keys(checked.table, contract)
            repeated = find_repeated_conflicts(checked.table, keep, contract)
            conflicts = [
                Reject(int(checked.lines[c.index]), contract.key[0], c.reason(contract), c.key)
                for c in repeated
            ]
            outcome = _Checked.of(checked, conflicts)
            lines = checked.lines[keep]
            del checked
            unique = unique.append_column(DIGEST_COLUMN, content_digests(unique, contract))
            content = unique.select([*contract.columns, DIGEST_COLUMN])
            yield outcome, unique, raw_rows, _Written(content, lines, len(conflicts))
            del unique, content  # not kept alive while the next chunk is validated

    def derived(chunks: Iterator[_Chunk]) -> Iterator[_Chunk]:
        for outcome, unique, raw_rows, written in chunks:
            if contract.kind is IngestKind.interactions:
                unique = retention.apply(with_features(unique))
            yield outcome, unique, raw_rows, written
            del unique, written

    def prepared(chunks: Iterator[_Chunk]) -> Iterator[_PreparedChunk]:
        for outcome, unique, raw_rows, written in chunks:
            rows = prepare_rows(engine.dialect.name, contract, unique, run_id, scratch)
            del unique
            yield _PreparedChunk(outcome, rows, raw_rows, contract, written)
            del rows, written

    batches = read_batches(source.path, source.file_format, contract)
    raw_chunks = _chunks(batches, source.chunk_rows, skip=run.rows_done)
    # The database merges or copies a chunk (in SQLite's C code or PostgreSQL's server, with
    # the GIL released) while the next one is validated, given its features and encoded, on
    # one thread. (A second thread, a chunk apart, measured no faster on PostgreSQL with 1M
    # interactions and held ~110 MB more: 16.3 / 16.5 s against 15.8 / 16.5 s with sample
    # retention, 24.3 / 24.6 s against 24.1 / 23.1 s with all text.)
    return prefetch(prepared(derived(validated(raw_chunks))))


@dataclass(frozen=True)
class _Checked:
    """What validation found in a chunk (its rows are in the chunk's payload)."""

    valid: int
    rejected: int
    blank: int
    rejects: list[Reject]

    @classmethod
    def of(cls, checked: CheckedBatch, conflicts: list[Reject]) -> _Checked:
        rejects = checked.rejects
        if conflicts:
            rejects = sorted(rejects + conflicts, key=lambda r: r.line)
        return cls(checked.table.num_rows, checked.rows_rejected, checked.rows_blank, rejects)


@dataclass(frozen=True)
class _Written:
    """The contract columns of the rows sent to the database, with their lines, for telling
    conflicting duplicates from plain ones."""

    content: pa.Table
    lines: np.ndarray
    repeated_conflicts: int  # rows repeating a key earlier in the chunk, with other content


# A chunk between validation and encoding: what was found, the rows to write, the raw rows it
# covers, and what conflict detection needs.
_Chunk = tuple["_Checked", pa.Table, int, "_Written"]


@dataclass(frozen=True)
class _PreparedChunk:
    checked: _Checked
    rows: PreparedRows
    raw_rows: int
    contract: InputContract
    written: _Written


def _check_whole_file(
    path: Path,
    file_format: FileFormat,
    contract: InputContract,
    strict: bool,
    progress: Progress | None,
    timestamps: TimestampRange,
) -> _Precheck:
    rows = 0
    warnings: list[str] = []
    if progress:
        progress.phase(f"checking {path.name}", path.stat().st_size)
    with path.open("rb") as raw:
        hashing = HashingReader(raw)
        last_bytes = 0
        for batch in read_batches(path, file_format, contract, stream=hashing):
            if rows == 0:
                extra = [c for c in batch.table.column_names if c not in contract.columns]
                warnings += _extra_column_warnings(path, extra)
            rows += batch.table.num_rows
            if strict:
                _refuse_bad_rows(path, check_batch(batch, contract, timestamps))
            if progress:
                progress.advance(hashing.bytes_read - last_bytes)
                last_bytes = hashing.bytes_read
        while hashing.read(8 << 20):  # readers may stop before EOF; hash every byte
            pass
    if file_format.format == "jsonl":
        warnings += _extra_column_warnings(path, [])
    return _Precheck(hashing.sha256.hexdigest(), rows, warnings)


def _extra_column_warnings(path: Path, extra: list[str]) -> list[str]:
    if not extra:
        return []
    return [f"{path}: ignoring columns not in the data contract: {', '.join(extra)}"]


def _refuse_bad_rows(path: Path, checked: CheckedBatch) -> None:
    if checked.rejects:
        first = checked.rejects[0]
        raise IngestError(
            path,
            f"--strict: {first.reason} (value {first.value!r}); "
            f"{checked.rows_rejected} bad row(s) in this part of the file, nothing written",
            line=first.line,
            column=first.column,
        )


# A chunk holds at most ``chunk_rows`` rows and stops growing once its columns take this many
# bytes: a few chunks are in memory at once (one per stage of the pipeline), so their size,
# not their row count, is what bounds memory when rows are long.
CHUNK_BYTES = 32 << 20


def _chunks(
    batches: Iterator[RawBatch], chunk_rows: int, *, skip: int, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[RawBatch, int]]:
    """Regroup reader batches into chunks of ``chunk_rows`` rows (fewer where that many rows
    would take more than ``chunk_bytes``), skipping the first ``skip``."""
    pending: list[RawBatch] = []
    pending_rows = pending_bytes = 0
    for batch in batches:
        if skip:
            if batch.table.num_rows <= skip:
                skip -= batch.table.num_rows
                continue
            batch, skip = batch.slice(skip), 0
        while batch.table.num_rows:
            take = min(chunk_rows - pending_rows, batch.table.num_rows)
            piece = batch.head(take)
            pending.append(piece)
            pending_rows += take
            pending_bytes += piece.table.nbytes
            batch = batch.slice(take)
            if pending_rows == chunk_rows or pending_bytes >= chunk_bytes:
                # The pieces go before the chunk is handed on: only the joined copy stays.
                chunk, pending = _concat(pending), []
                yield chunk, pending_rows
                del chunk, piece
                pending_rows = pending_bytes = 0
    if pending:
        chunk, pending = _concat(pending), []
        yield chunk, pending_rows


# A chunk whose columns take less than this is made contiguous (one array per column): the
# validation and feature kernels then run once per chunk instead of once per reader block, and
# the regular expressions are compiled once. Above it a text column could overflow Arrow's
# 32-bit offsets, so it stays in pieces (slower, same result).
_CONTIGUOUS_BYTES = 1 << 30


def _concat(batches: list[RawBatch]) -> RawBatch:
    offset = 0
    problems = []
    for batch in batches:
        problems += [(row + offset, c, why, v) for row, c, why, v in batch.problems]
        offset += batch.table.num_rows
    table = pa.concat_tables([b.table for b in batches], promote_options="permissive")
    if table.nbytes < _CONTIGUOUS_BYTES:
        table = table.combine_chunks()
    return RawBatch(table, np.concatenate([b.lines for b in batches]), problems)


def _start_or_resume(
    engine: sa.Engine,
    path: Path,
    kind: IngestKind,
    file_format: FileFormat,
    strict: bool,
    sha256: str,
) -> IngestRun:
    with Session(engine) as session:
        unfinished = session.exec(
            select(IngestRun)
            .where(IngestRun.sha256 == sha256, IngestRun.kind == kind)
            .where(IngestRun.status == IngestStatus.running)
            .order_by(col(IngestRun.id).desc())
        ).first()
        if unfinished is not None:
            log.info(
                "resuming ingest run %s of %s at row %s", unfinished.id, path, unfinished.rows_done
            )
            return unfinished
        run = IngestRun(
            kind=kind,
            file_name=str(path),
            sha256=sha256,
            format=file_format.format,
            compression="gzip" if file_format.gzip else None,
            strict=strict,
        )
        session.add(run)
        session.commit()
        session.refresh(run)
        return run


# PostgreSQL's SQLSTATEs for a transaction that lost a race and may simply be run again.
_RETRYABLE = {"40001", "40P01"}  # serialization_failure, deadlock_detected
COMMIT_ATTEMPTS = 5


def _commit_chunk(engine: sa.Engine, run_id: int, chunk: _PreparedChunk) -> None:
    """Write a chunk's rows and rejects and advance the checkpoint, in one transaction.

    Rows go in key order, so concurrent ingests should not deadlock; if PostgreSQL still
    aborts the transaction as a deadlock or serialization failure, the whole chunk (its bytes
    are kept) is written again. SQLite's chunk file is deleted once merged, and SQLite, whose
    writers take turns, never needs it.
    """
    attempts = COMMIT_ATTEMPTS if engine.dialect.name == "postgresql" else 1
    for attempt in range(1, attempts + 1):
        try:
            _commit_chunk_once(engine, run_id, chunk)
            return
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) not in _RETRYABLE or attempt == attempts:
                raise
            log.info("chunk of run %s lost a race (%s); writing it again", run_id, exc.orig)
            time.sleep(random.uniform(0.05, 0.2) * attempt)


def _commit_chunk_once(engine: sa.Engine, run_id: int, chunk: _PreparedChunk) -> None:
    checked = chunk.checked
    valid = checked.valid
    with (
        engine.connect() as connection,
        ready_to_write(connection, chunk.rows),
        connection.begin(),
    ):
        written = write_prepared(connection, chunk.rows)
        rejects = checked.rejects
        conflicts = chunk.written.repeated_conflicts
        if written < chunk.rows.rows:
            stored = _stored_conflicts(connection, chunk)
            rejects = sorted(rejects + stored, key=lambda r: r.line)
            conflicts += len(stored)
        _insert_rejects(connection, run_id, rejects)
        runs = IngestRun.__table__.c  # type: ignore[attr-defined]
        connection.execute(
            sa.update(IngestRun)
            .where(runs.id == run_id)
            .values(
                rows_done=runs.rows_done + chunk.raw_rows,
                rows_read=runs.rows_read + valid + checked.rejected,
                rows_inserted=runs.rows_inserted + written,
                # A conflicting duplicate is not stored either, but it is reported as rejected.
                rows_duplicate=runs.rows_duplicate + (valid - written - conflicts),
                rows_rejected=runs.rows_rejected + checked.rejected + conflicts,
                rows_blank=runs.rows_blank + checked.blank,
            )
        )


def _insert_rejects(connection: sa.Connection, run_id: int, rejects: list[Reject]) -> None:
    if rejects:
        connection.execute(
            sa.insert(IngestReject),
            [
                {
                    "ingest_run_id": run_id,
                    "line": r.line,
                    "column": r.column,
                    "reason": r.reason,
                    "value": r.value,
                }
                for r in rejects
            ],
        )


def _stored_conflicts(connection: sa.Connection, chunk: _PreparedChunk) -> list[Reject]:
    found: list[Conflict] = find_stored_conflicts(connection, chunk.written.content, chunk.contract)
    key = chunk.contract.key[0]
    return [
        Reject(int(chunk.written.lines[c.index]), key, c.reason(chunk.contract), c.key)
        for c in found
    ]


def _finish(
    engine: sa.Engine,
    run_id: int,
    path: Path,
    precheck: _Precheck,
    rejects_dir: Path,
    resumed_from: int,
) -> IngestSummary:
    with Session(engine) as session:
        run = session.get(IngestRun, run_id)
        assert run is not None
        rejects = session.exec(
            select(IngestReject)
            .where(IngestReject.ingest_run_id == run_id)
            .order_by(col(IngestReject.line))
        ).all()
        rejects_path = _write_rejects_file(path, precheck.sha256, rejects, rejects_dir)
        run.status = IngestStatus.completed
        run.finished_at = utc_now()
        run.rejects_path = str(rejects_path) if rejects_path else None
        session.add(run)
        session.commit()
        session.refresh(run)
        reasons = Counter((r.column, r.reason) for r in rejects).most_common(5)
        summary = IngestSummary(
            run_id=run_id,
            file=str(path),
            kind=run.kind,
            status=run.status,
            rows_read=run.rows_read,
            rows_inserted=run.rows_inserted,
            rows_duplicate=run.rows_duplicate,
            rows_rejected=run.rows_rejected,
            rows_blank=run.rows_blank,
            resumed_from_row=resumed_from,
            rejects_path=run.rejects_path,
            top_reject_reasons=[(c, why, n) for (c, why), n in reasons],
            warnings=precheck.warnings,
        )
    # With no transaction left open here: ANALYZE may wait for a concurrent ingest's chunk.
    try:
        refresh_statistics(engine, summary.kind, summary.rows_inserted)
    except sa.exc.DBAPIError as exc:  # the rows are in; autovacuum will do it later
        log.warning("could not refresh the statistics after run %s: %s", run_id, exc)
    return summary


def _write_rejects_file(
    path: Path, sha256: str, rejects: Sequence[IngestReject], rejects_dir: Path
) -> Path | None:
    """Write the rejects CSV atomically; the name depends only on the file, so re-runs agree."""
    if not rejects:
        return None
    rejects_dir.mkdir(parents=True, exist_ok=True)
    target = rejects_dir / f"{path.name}.{sha256[:12]}.rejects.csv"
    partial = target.with_suffix(".partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "line", "column", "reason", "value"])
        for reject in rejects:
            writer.writerow([str(path), reject.line, reject.column, reject.reason, reject.value])
    os.replace(partial, target)
    return target


def _mark_failed(engine: sa.Engine, run_id: int, error: str) -> None:
    """Record why the run stopped; if even that fails (the database went away), log it and
    leave the original error to propagate."""
    try:
        with Session(engine) as session:
            run = session.get(IngestRun, run_id)
            if run is not None:
                run.status, run.error, run.finished_at = IngestStatus.failed, error, utc_now()
                session.add(run)
                session.commit()
    except Exception:
        log.exception("could not mark ingest run %s failed (%s)", run_id, error)


def _record_refusal(
    engine: sa.Engine,
    path: Path,
    kind: IngestKind,
    file_format: FileFormat,
    strict: bool,
    error: IngestError,
) -> None:
    with Session(engine) as session:
        session.add(
            IngestRun(
                kind=kind,
                file_name=str(path),
                sha256="",
                format=file_format.format,
                compression="gzip" if file_format.gzip else None,
                strict=strict,
                status=IngestStatus.refused,
                finished_at=utc_now(),
                error=str(error),
            )
        )
        session.commit()
