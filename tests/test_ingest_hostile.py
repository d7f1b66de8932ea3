"""Ingest under hostile and careless input (issue 12): out-of-range timestamps, odd Parquet
types, concurrent overlapping ingests, misspelled keys, conflicting duplicates."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from analytics.errors import IngestError
from analytics.ingest.retention import TextRetention
from analytics.ingest.runner import IngestSummary, ingest_file
from analytics.ingest.validate import TimestampRange
from analytics.models import IngestKind, IngestRun, IngestStatus
from analytics.settings import get_settings
from tests.factories import INTERACTION_COLUMNS, interaction, write_rows

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SPAN = TimestampRange.ending_days_after(date(2000, 1, 1), 100, now=NOW)
MS = 1790856000000  # 2026-10-01T12:00:00Z in epoch milliseconds


def ingest(
    engine: sa.Engine, path: Path, kind: IngestKind = IngestKind.interactions, **kwargs: Any
) -> IngestSummary:
    kwargs.setdefault("timestamps", SPAN)
    kwargs.setdefault("retention", TextRetention("all"))  # these tests read stored text back
    return ingest_file(path, kind, engine=engine, rejects_dir=path.parent / "rejects", **kwargs)


def reasons(summary: IngestSummary) -> dict[int, str]:
    """The first reason given for each rejected line."""
    assert summary.rejects_path is not None
    first: dict[int, str] = {}
    with open(summary.rejects_path, newline="", encoding="utf-8") as handle:
        for r in csv.DictReader(handle):
            first.setdefault(int(r["line"]), r["reason"])
    return first


def statuses(engine: sa.Engine) -> list[IngestStatus]:
    with Session(engine) as session:
        return [r.status for r in session.exec(select(IngestRun)).all()]


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


# --- 1. timestamps outside a sane range ------------------------------------------------------

BAD_TIMESTAMPS: list[tuple[Any, str]] = [
    (MS * 1000, "looks like epoch microseconds"),
    (MS * 1_000_000, "looks like epoch nanoseconds"),
    ("0001-01-01T00:00:00Z", "year 1 is out of range 2000-01-01 to 2027-03-11"),
    ("9999-12-31T00:00:00Z", "year 9999 is out of range 2000-01-01 to 2027-03-11"),
    ("58729-01-01T00:00:00", "year 58729 is out of range"),
    ("2027-06-01T00:00:00Z", "2027-06-01 is out of range"),
    (MS // 1000, "looks like epoch seconds"),
    (9 * 10**18, "epoch value as milliseconds is out of range"),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_out_of_range_timestamps_are_rejected_saying_what_was_seen(
    engine: sa.Engine, tmp_path: Path, fmt: str
) -> None:
    rows = [interaction(0, timestamp=MS)]
    rows += [interaction(i + 1, timestamp=value) for i, (value, _) in enumerate(BAD_TIMESTAMPS)]
    if fmt != "jsonl":  # one column type: the epochs as text
        rows = [{**r, "timestamp": str(r["timestamp"])} for r in rows]
    path = write_rows(tmp_path / f"t.{fmt}", rows, INTERACTION_COLUMNS)

    summary = ingest(engine, path, chunk_rows=1000)

    assert (summary.rows_inserted, summary.rows_rejected) == (1, len(BAD_TIMESTAMPS))
    got = [why for _, why in sorted(reasons(summary).items())]
    for why, (_, expected) in zip(got, BAD_TIMESTAMPS, strict=True):
        assert expected in why
    assert statuses(engine) == [IngestStatus.completed]


def test_epoch_nanoseconds_after_committed_chunks_do_not_crash_the_run(
    engine: sa.Engine, tmp_path: Path
) -> None:
    rows = [interaction(i, timestamp=MS + i) for i in range(2500)]
    rows[2400]["timestamp"] = MS * 1_000_000
    path = write_rows(tmp_path / "t.jsonl", rows, INTERACTION_COLUMNS)

    summary = ingest(engine, path, chunk_rows=1000)

    assert (summary.rows_inserted, summary.rows_rejected) == (2499, 1)
    assert "nanoseconds" in reasons(summary)[2401]
    assert statuses(engine) == [IngestStatus.completed]


@pytest.mark.parametrize(
    "array",
    [
        pa.array([MS, MS * 1000, 253402214400000], type=pa.timestamp("ms")),
        pa.array([MS * 1000, MS * 1000 * 1000, -62135596800000000], type=pa.timestamp("us")),
        pa.array([MS // 1000, 10**15, -(10**15)], type=pa.timestamp("s", tz="UTC")),
        pa.array([MS * 10**6, 9 * 10**18, -(9 * 10**18)], type=pa.timestamp("ns")),
        pa.array([20362, 2932896, -719162], type=pa.date32()),
    ],
    ids=["ms", "us", "s", "ns", "date32"],
)
def test_typed_parquet_instants_out_of_range_are_rejected(
    engine: sa.Engine, tmp_path: Path, array: pa.Array
) -> None:
    table = pa.table(
        {"event_id": ["a", "b", "c"], "user_id": ["u"] * 3, "timestamp": array, "prompt": ["p"] * 3}
    )
    pq.write_table(table, tmp_path / "t.parquet")

    summary = ingest(engine, tmp_path / "t.parquet")

    assert (summary.rows_inserted, summary.rows_rejected) == (1, 2)
    assert all("out of range 2000-01-01" in why for why in reasons(summary).values())


def test_the_timestamp_range_comes_from_the_settings(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFTERSHOCK_TIMESTAMP_MIN", "2026-10-02")
    monkeypatch.setenv("AFTERSHOCK_TIMESTAMP_MAX_DAYS_AHEAD", "30")
    get_settings.cache_clear()
    try:
        path = write_rows(
            tmp_path / "t.csv",
            [interaction(1, timestamp="2026-10-01T00:00:00Z"), interaction(2)],
            INTERACTION_COLUMNS,
        )
        summary = ingest(engine, path, timestamps=None)
    finally:
        get_settings.cache_clear()
    assert summary.rows_rejected == 1
    assert "2026-10-01 is out of range 2026-10-02 to " in reasons(summary)[2]


# --- 2. Parquet columns of unexpected types ----------------------------------------------------


def _parquet(tmp_path: Path, **columns: pa.Array) -> Path:
    base: dict[str, Any] = {
        "event_id": pa.array(["a", "b"]),
        "user_id": pa.array(["u", "u"]),
        "timestamp": pa.array([MS, MS + 1], type=pa.timestamp("ms")),
        "prompt": pa.array(["p", "q"]),
    }
    base.update(columns)
    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table(base), path)
    return path


REFUSED_TYPES = {
    "bool timestamp": ("timestamp", pa.array([True, False])),
    "decimal timestamp": ("timestamp", pa.array([1, 2], type=pa.decimal128(20, 0))),
    "time32 timestamp": ("timestamp", pa.array([1, 2], type=pa.time32("s"))),
    "duration timestamp": ("timestamp", pa.array([1, 2], type=pa.duration("s"))),
    "list event_id": ("event_id", pa.array([["a"], ["b"]])),
    "struct prompt": ("prompt", pa.array([{"x": 1}, {"x": 2}])),
    "list latency_ms": ("latency_ms", pa.array([[1.0], [2.0]])),
    "dictionary of bools timestamp": (
        "timestamp",
        pa.array([True, False]).dictionary_encode(),
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_TYPES))
def test_parquet_columns_of_unusable_types_are_refused_before_writing(
    engine: sa.Engine, tmp_path: Path, case: str
) -> None:
    name, array = REFUSED_TYPES[case]
    path = _parquet(tmp_path, **{name: array})

    with pytest.raises(IngestError, match=rf"column '{name}' has Parquet type"):
        ingest(engine, path)

    assert count(engine, "interactions") == 0
    assert statuses(engine) == [IngestStatus.refused]


def test_list_attributes_in_exposures_are_refused(engine: sa.Engine, tmp_path: Path) -> None:
    table = pa.table(
        {
            "user_id": ["u1", "u2"],
            "timestamp": pa.array([MS, MS], type=pa.timestamp("ms")),
            "experiment_id": ["e", "e"],
            "variation_id": ["0", "1"],
            "attributes": pa.array([["a"], ["b"]]),
        }
    )
    pq.write_table(table, tmp_path / "x.parquet")
    with pytest.raises(IngestError, match=r"column 'attributes' has Parquet type list"):
        ingest(engine, tmp_path / "x.parquet", IngestKind.exposures)
    assert count(engine, "exposures") == 0


def test_binary_text_with_invalid_utf8_is_refused_naming_the_row(
    engine: sa.Engine, tmp_path: Path
) -> None:
    path = _parquet(tmp_path, prompt=pa.array([b"fine", b"\xff\xfe broken"], type=pa.binary()))

    with pytest.raises(IngestError, match=r"line 2, column prompt: invalid UTF-8"):
        ingest(engine, path)

    assert count(engine, "interactions") == 0
    assert statuses(engine) == [IngestStatus.refused]


def test_parquet_columns_that_cast_safely_are_accepted(engine: sa.Engine, tmp_path: Path) -> None:
    path = _parquet(
        tmp_path,
        event_id=pa.array(["a", "b"]).dictionary_encode(),
        timestamp=pa.array(["2026-10-01T12:00:00Z", "2026-10-02T12:00:00Z"]).dictionary_encode(),
        prompt=pa.array([b"caf\xc3\xa9", b"plain"], type=pa.binary()),
        latency_ms=pa.array([12, 13], type=pa.decimal128(10, 2)),
        user_id=pa.array(["u", "v"], type=pa.large_string()),
    )

    summary = ingest(engine, path)

    assert (summary.rows_inserted, summary.rows_rejected) == (2, 0)
    with engine.connect() as connection:
        prompts = connection.execute(sa.text("SELECT prompt FROM interactions ORDER BY event_id"))
        assert [p for (p,) in prompts] == ["café", "plain"]


def test_an_unexpected_error_while_writing_fails_the_run(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import analytics.ingest.runner as runner

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runner, "write_prepared", broken)
    path = write_rows(tmp_path / "t.csv", [interaction(1)], INTERACTION_COLUMNS)

    with pytest.raises(RuntimeError):
        ingest(engine, path)

    with Session(engine) as session:
        run = session.exec(select(IngestRun)).one()
    assert run.status == IngestStatus.failed
    assert run.error is not None and "disk on fire" in run.error


def test_an_unexpected_error_while_checking_refuses_the_file(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import analytics.ingest.runner as runner

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise pa.ArrowNotImplementedError("no kernel")

    monkeypatch.setattr(runner, "read_batches", broken)
    path = write_rows(tmp_path / "t.csv", [interaction(1)], INTERACTION_COLUMNS)

    with pytest.raises(IngestError, match="ArrowNotImplementedError: no kernel"):
        ingest(engine, path)
    assert statuses(engine) == [IngestStatus.refused]


# --- 3. concurrent ingests of overlapping files ------------------------------------------------


@pytest.mark.parametrize("kind", [IngestKind.interactions, IngestKind.exposures])
def test_concurrent_ingests_of_overlapping_files_all_finish(
    engine: sa.Engine, tmp_path: Path, kind: IngestKind
) -> None:
    import random
    from concurrent.futures import ThreadPoolExecutor

    from tests.factories import EXPOSURE_COLUMNS, exposure

    if kind is IngestKind.interactions:
        rows, columns = [interaction(i) for i in range(3000)], INTERACTION_COLUMNS
    else:
        rows, columns = [exposure(i) for i in range(3000)], EXPOSURE_COLUMNS
    paths = []
    for n in range(3):
        shuffled = rows[:]
        random.Random(n).shuffle(shuffled)
        paths.append(write_rows(tmp_path / f"part{n}.csv", shuffled, columns))

    with ThreadPoolExecutor(3) as pool:
        summaries = list(pool.map(lambda p: ingest(engine, p, kind, chunk_rows=200), paths))

    table = "interactions" if kind is IngestKind.interactions else "exposures"
    assert count(engine, table) == 3000
    assert sum(s.rows_inserted for s in summaries) == 3000
    assert statuses(engine) == [IngestStatus.completed] * 3


def test_a_chunk_that_loses_a_deadlock_is_written_again(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import analytics.ingest.runner as runner

    if engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL reports deadlocks; SQLite's writers take turns")

    class DeadlockError(Exception):
        sqlstate = "40P01"

    real = runner._commit_chunk_once
    failures = iter([True])

    def flaky(*args: Any) -> None:
        if next(failures, False):
            raise sa.exc.OperationalError("COPY", {}, DeadlockError("deadlock detected"))
        real(*args)

    monkeypatch.setattr(runner, "_commit_chunk_once", flaky)
    path = write_rows(tmp_path / "t.csv", [interaction(i) for i in range(5)], INTERACTION_COLUMNS)

    assert ingest(engine, path).rows_inserted == 5
    assert count(engine, "interactions") == 5


# --- 4. smaller ones ---------------------------------------------------------------------------


def test_unterminated_quote_is_reported_where_its_row_starts(
    engine: sa.Engine, tmp_path: Path
) -> None:
    path = tmp_path / "open.csv"
    lines = ["event_id,user_id,timestamp,prompt", "e1,u1,2026-10-01,ok", 'e2,u1,2026-10-01,"cut']
    lines += [f"e{i},u1,2026-10-01,more" for i in range(3, 13)]
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(IngestError, match="unterminated quote") as info:
        ingest(engine, path)

    assert info.value.line == 3
    assert count(engine, "interactions") == 0


def test_a_csv_row_too_large_for_the_reader_is_refused_naming_its_line(
    engine: sa.Engine, tmp_path: Path
) -> None:
    path = tmp_path / "huge.csv"
    huge = "x" * (9 << 20)
    path.write_text(
        "event_id,user_id,timestamp,prompt\ne1,u1,2026-10-01,ok\ne2,u1,2026-10-01," + huge + "\n"
    )

    with pytest.raises(
        IngestError, match=r"a row of 9.0 MiB: CSV rows are read up to 4 MiB"
    ) as info:
        ingest(engine, path)

    assert info.value.line == 3
    assert count(engine, "interactions") == 0


def test_a_csv_value_under_the_limit_is_stored(engine: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "large.csv"
    large = "x" * (3 << 20)
    path.write_text('event_id,user_id,timestamp,prompt\ne1,u1,2026-10-01,"' + large + '"\n')
    assert ingest(engine, path).rows_inserted == 1


def test_jsonl_lines_with_only_misspelled_keys_are_rejected_not_blank(
    engine: sa.Engine, tmp_path: Path
) -> None:
    path = tmp_path / "typo.jsonl"
    good = '{"event_id": "e1", "user_id": "u1", "timestamp": "2026-10-01", "prompt": "hi"}'
    typo = '{"eventid": "e2", "userid": "u1", "time": "2026-10-01", "promt": "hi"}'
    path.write_text(f"{good}\n{typo}\n{{}}\n\n")

    summary = ingest(engine, path)

    assert (summary.rows_inserted, summary.rows_rejected, summary.rows_blank) == (1, 2, 1)
    got = reasons(summary)
    assert "none of the contract's fields (found: eventid, userid, time, promt)" in got[2]
    assert "none of the contract's fields (found: no fields)" in got[3]


def test_a_jsonl_file_without_the_required_keys_is_refused_naming_them(
    engine: sa.Engine, tmp_path: Path
) -> None:
    path = tmp_path / "typo.jsonl"
    path.write_text('{"eventid": "e2", "userid": "u1", "timestamp": "2026-10-01", "promt": "x"}\n')

    with pytest.raises(
        IngestError, match="required fields 'event_id', 'user_id', 'prompt'"
    ) as info:
        ingest(engine, path)

    assert "the lines have: eventid, promt, userid" in str(info.value)
    assert statuses(engine) == [IngestStatus.refused]


def test_identifiers_are_trimmed_so_spellings_with_spaces_are_one_key(
    engine: sa.Engine, tmp_path: Path
) -> None:
    first = write_rows(tmp_path / "a.csv", [interaction(1, event_id="e1")], INTERACTION_COLUMNS)
    second = write_rows(
        tmp_path / "b.jsonl",
        [interaction(1, event_id="  e1\t", user_id=" u001 "), interaction(2, event_id=" \u00a0")],
        INTERACTION_COLUMNS,
    )
    ingest(engine, first)
    summary = ingest(engine, second)

    assert (summary.rows_inserted, summary.rows_duplicate, summary.rows_rejected) == (0, 1, 1)
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT event_id, user_id FROM interactions")).all()
    assert [tuple(r) for r in stored] == [("e1", "u001")]


@pytest.mark.parametrize("what", ["directory", "fifo"])
def test_a_directory_or_fifo_is_named_for_what_it_is(
    engine: sa.Engine, tmp_path: Path, what: str
) -> None:
    import os

    path = tmp_path / "logs.csv"
    if what == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    expected = "a directory" if what == "directory" else r"a FIFO \(named pipe\)"
    with pytest.raises(IngestError, match=rf"logs.csv: is {expected}, not a regular file"):
        ingest(engine, path)
    with pytest.raises(IngestError, match="no such file"):
        ingest(engine, tmp_path / "missing.csv")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_conflicting_duplicates_are_reported_apart_from_plain_ones(
    engine: sa.Engine, tmp_path: Path, fmt: str
) -> None:
    rows = [interaction(i) for i in range(6)]
    ingest(engine, write_rows(tmp_path / f"first.{fmt}", rows, INTERACTION_COLUMNS))
    later = [interaction(i) for i in range(6)]
    later[1]["prompt"] = "something else"
    later[2]["timestamp"] = "2026-11-01T00:00:00Z"
    later.append(interaction(3, feedback=1 if rows[3]["feedback"] != 1 else 0))  # within the file
    later.append(interaction(4))  # a plain repeat within the file

    summary = ingest(engine, write_rows(tmp_path / f"second.{fmt}", later, INTERACTION_COLUMNS))

    assert (summary.rows_inserted, summary.rows_duplicate, summary.rows_rejected) == (0, 5, 3)
    got = sorted(reasons(summary).values())
    assert got == [
        "conflicting duplicate: event_id evt-000001 was already seen with a different prompt; "
        "the first write is kept",
        "conflicting duplicate: event_id evt-000002 was already seen with a different timestamp; "
        "the first write is kept",
        "conflicting duplicate: event_id evt-000003 was already seen with a different feedback; "
        "the first write is kept",
    ]
    with engine.connect() as connection:
        prompt = connection.execute(
            sa.text("SELECT prompt FROM interactions WHERE event_id = 'evt-000001'")
        ).scalar_one()
    assert prompt == rows[1]["prompt"]
    assert ingest(engine, tmp_path / f"first.{fmt}").rows_duplicate == 6  # a plain re-run


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("2026-13-01", "not a timestamp"),
        ("+2026-01-01", "not a timestamp"),
        ("-2026-01-01", "year -2026 is out of range"),
        ("10000-01-01", "year 10000 is out of range"),
        ("1999-12-31T23:59:59Z", "year 1999 is out of range"),
        ("1e400", "not a timestamp"),
    ],
)
def test_malformed_or_far_dates_get_the_right_reason(
    engine: sa.Engine, tmp_path: Path, written: str, reason: str
) -> None:
    path = write_rows(tmp_path / "t.csv", [interaction(1, timestamp=written)], INTERACTION_COLUMNS)
    summary = ingest(engine, path)
    assert summary.rows_rejected == 1
    assert reason in reasons(summary)[2]


def test_in_range_after_conversion_to_utc_is_kept(engine: sa.Engine, tmp_path: Path) -> None:
    row = interaction(1, timestamp="1999-12-31T23:00:00-02:00")  # 2000-01-01T01:00Z
    summary = ingest(engine, write_rows(tmp_path / "t.csv", [row], INTERACTION_COLUMNS))
    assert summary.rows_inserted == 1


def test_struct_attributes_holding_decimals_are_stored_as_json(
    engine: sa.Engine, tmp_path: Path
) -> None:
    from decimal import Decimal

    table = pa.table(
        {
            "user_id": ["u1"],
            "timestamp": pa.array([MS], type=pa.timestamp("ms")),
            "experiment_id": ["e"],
            "variation_id": ["0"],
            "attributes": pa.array(
                [{"spend": Decimal("1.50")}], type=pa.struct([("spend", pa.decimal128(5, 2))])
            ),
        }
    )
    pq.write_table(table, tmp_path / "x.parquet")
    assert ingest(engine, tmp_path / "x.parquet", IngestKind.exposures).rows_inserted == 1


def test_an_all_null_parquet_column_rejects_its_rows(engine: sa.Engine, tmp_path: Path) -> None:
    path = _parquet(tmp_path, timestamp=pa.nulls(2), latency_ms=pa.nulls(2))
    summary = ingest(engine, path)
    assert (summary.rows_inserted, summary.rows_rejected) == (0, 2)
    assert set(reasons(summary).values()) == {"timestamp is missing"}
