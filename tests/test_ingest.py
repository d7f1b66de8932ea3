"""Ingest: formats, refused files, rejected rows, idempotency, resume, time zones."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from analytics.errors import IngestError
from analytics.ingest.retention import TextRetention
from analytics.ingest.runner import IngestSummary, ingest_file
from analytics.models import Exposure, IngestKind, IngestRun, IngestStatus, Interaction
from tests.factories import EXPOSURE_COLUMNS, INTERACTION_COLUMNS, exposure, interaction, write_rows

FORMATS = ["csv", "csv.gz", "jsonl", "jsonl.gz", "parquet", "parquet.gz"]


def ingest(
    engine: sa.Engine, path: Path, kind: IngestKind = IngestKind.interactions, **kwargs: Any
) -> IngestSummary:
    return ingest_file(path, kind, engine=engine, rejects_dir=path.parent / "rejects", **kwargs)


def interactions_in(engine: sa.Engine) -> list[Interaction]:
    with Session(engine) as session:
        return list(session.exec(select(Interaction).order_by(col(Interaction.event_id))).all())


def exposures_in(engine: sa.Engine) -> list[Exposure]:
    with Session(engine) as session:
        return list(session.exec(select(Exposure).order_by(col(Exposure.user_id))).all())


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def read_rejects(summary: IngestSummary) -> list[dict[str, str]]:
    assert summary.rejects_path is not None
    with open(summary.rejects_path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_stores_every_interaction_exactly(
    engine: sa.Engine, tmp_path: Path, fmt: str
) -> None:
    rows = [interaction(i) for i in range(40)]
    rows[3]["prompt"] = 'Fix this:\n```python\nprint("hi, there")\n```\nOnly use Python.'
    rows[4]["response"] = None
    rows[5]["feedback"] = None
    path = write_rows(tmp_path / f"interactions.{fmt}", rows, INTERACTION_COLUMNS)

    summary = ingest(engine, path, retention=TextRetention("all"))

    assert (summary.rows_read, summary.rows_inserted, summary.rows_rejected) == (40, 40, 0)
    stored = {r.event_id: r for r in interactions_in(engine)}
    for row in rows:
        got = stored[row["event_id"]]
        assert got.user_id == row["user_id"]
        assert got.prompt == row["prompt"]
        assert got.response == row["response"]
        assert got.latency_ms == pytest.approx(row["latency_ms"])
        assert got.feedback == row["feedback"]
        assert got.complaint == bool(row["complaint"])
        assert got.retry is False
        expected = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
        assert got.timestamp == expected
        assert got.timestamp.tzinfo is not None


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_stores_exposures_with_attributes(
    engine: sa.Engine, tmp_path: Path, fmt: str
) -> None:
    rows = [exposure(i) for i in range(10)]
    path = write_rows(tmp_path / f"exposures.{fmt}", rows, EXPOSURE_COLUMNS)

    summary = ingest(engine, path, IngestKind.exposures)

    assert summary.rows_inserted == 10
    stored = exposures_in(engine)
    assert [e.user_id for e in stored] == [r["user_id"] for r in rows]
    assert stored[0].attributes == {"id": "u000", "plan": "pro"}
    assert stored[0].experiment_id == "chat-model-upgrade"
    assert stored[1].variation_id == "1"


def test_optional_columns_may_be_absent(engine: sa.Engine, tmp_path: Path) -> None:
    rows = [
        {k: interaction(i)[k] for k in ("event_id", "user_id", "timestamp", "prompt")}
        for i in range(5)
    ]
    summary = ingest(engine, write_rows(tmp_path / "minimal.csv", rows))
    assert summary.rows_inserted == 5
    assert interactions_in(engine)[0].response is None


def test_extra_columns_are_ignored_with_a_warning(engine: sa.Engine, tmp_path: Path) -> None:
    rows = [{**interaction(i), "tenant": "acme"} for i in range(3)]
    summary = ingest(engine, write_rows(tmp_path / "extra.csv", rows))
    assert summary.rows_inserted == 3
    assert any("tenant" in w for w in summary.warnings)


# --- refused files ---------------------------------------------------------------------------


def assert_nothing_written(engine: sa.Engine) -> None:
    assert count(engine, "interactions") == 0
    assert count(engine, "exposures") == 0
    assert count(engine, "ingest_rejects") == 0
    with Session(engine) as session:
        statuses = {r.status for r in session.exec(select(IngestRun)).all()}
    assert statuses <= {IngestStatus.refused}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "csv.gz"])
def test_missing_required_column_is_refused(engine: sa.Engine, tmp_path: Path, fmt: str) -> None:
    rows = [{k: v for k, v in interaction(i).items() if k != "timestamp"} for i in range(3)]
    path = write_rows(tmp_path / f"no_ts.{fmt}", rows)
    with pytest.raises(IngestError, match="timestamp") as info:
        ingest(engine, path)
    assert str(path) in str(info.value)
    assert_nothing_written(engine)


def test_wrong_field_count_names_the_line(engine: sa.Engine, tmp_path: Path) -> None:
    good = [interaction(i) for i in range(5)]
    path = write_rows(tmp_path / "ragged.csv", good, INTERACTION_COLUMNS)
    with path.open("a") as handle:
        handle.write("evt-x,u1,2026-10-01T00:00:00Z,too,few\n")
    with pytest.raises(IngestError) as info:
        ingest(engine, path)
    # Header + five rows of two lines each (their prompts hold a newline) = line 12.
    assert info.value.line == 12
    assert "expected 11 fields, found 5" in str(info.value)
    assert_nothing_written(engine)


def test_unterminated_quote_is_refused(engine: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "truncated.csv"
    path.write_text('event_id,user_id,timestamp,prompt\ne1,u1,2026-10-01,ok\ne2,u1,2026-10-01,"cut')
    with pytest.raises(IngestError, match="line 3"):
        ingest(engine, path)
    assert_nothing_written(engine)


def test_invalid_utf8_names_line_and_byte(engine: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        b"event_id,user_id,timestamp,prompt\ne1,u1,2026-10-01,ok\ne2,u1,2026-10-01,caf\xe9\n"
    )
    with pytest.raises(IngestError) as info:
        ingest(engine, path)
    assert (info.value.line, info.value.byte) == (3, 74)  # 0-based offset of the bad byte
    assert_nothing_written(engine)


def test_invalid_json_names_line_and_column(engine: sa.Engine, tmp_path: Path) -> None:
    path = write_rows(tmp_path / "bad.jsonl", [interaction(i) for i in range(3)])
    with path.open("ab") as handle:
        handle.write(b'{"event_id": "e9", "user_id": }\n')
    with pytest.raises(IngestError) as info:
        ingest(engine, path)
    assert (info.value.line, info.value.column) == (4, 31)
    assert_nothing_written(engine)


def test_json_line_that_is_not_an_object_is_refused(engine: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "array.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(IngestError, match="line 1: expected a JSON object"):
        ingest(engine, path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"hello", "unknown format"),
        ("empty.csv", b"", "empty"),
        ("broken.parquet", b"PAR1 not really", "not a readable Parquet file"),
        ("broken.csv.gz", b"not gzip at all", "gzip"),
    ],
)
def test_unreadable_files_are_refused(
    engine: sa.Engine, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError, match=message):
        ingest(engine, path)
    assert_nothing_written(engine)


def test_missing_file_is_refused(engine: sa.Engine, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file"):
        ingest(engine, tmp_path / "absent.csv")


def test_duplicate_header_is_refused(engine: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("event_id,user_id,timestamp,prompt,prompt\ne1,u1,2026-10-01,a,b\n")
    with pytest.raises(IngestError, match="appears twice"):
        ingest(engine, path)


def test_refusal_is_recorded(engine: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("event_id,user_id\n")
    with pytest.raises(IngestError):
        ingest(engine, path)
    with Session(engine) as session:
        run = session.exec(select(IngestRun)).one()
    assert run.status == IngestStatus.refused
    assert "missing required column" in (run.error or "")


# --- rejected rows ---------------------------------------------------------------------------

BAD_ROWS: list[tuple[dict[str, Any], str, str]] = [
    ({"timestamp": "yesterday"}, "timestamp", "not a timestamp"),
    ({"timestamp": "1761998400"}, "timestamp", "epoch value is before 1973"),
    ({"user_id": "   "}, "user_id", "user_id is empty"),
    ({"event_id": None}, "event_id", "event_id is missing"),
    ({"prompt": None}, "prompt", "prompt is missing"),
    ({"feedback": 2}, "feedback", "feedback must be -1, 0 or 1"),
    ({"feedback": "0.5"}, "feedback", "feedback must be -1, 0 or 1"),
    ({"feedback": "meh"}, "feedback", "feedback is not a number"),
    ({"latency_ms": -3}, "latency_ms", "latency_ms must be a finite number >= 0"),
    ({"latency_ms": "fast"}, "latency_ms", "latency_ms is not a number"),
    ({"complaint": "maybe"}, "complaint", "complaint must be 0/1 or true/false"),
    ({"retry": 7}, "retry", "retry must be 0/1 or true/false"),
    ({"user_id": "u" * 300}, "user_id", "longer than 255"),
    ({"prompt": "nul\x00byte"}, "prompt", "NUL"),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_bad_rows_are_rejected_with_line_column_and_reason(
    engine: sa.Engine, tmp_path: Path, fmt: str
) -> None:
    rows = [interaction(i) for i in range(len(BAD_ROWS) + 3)]
    for i, (override, _, _) in enumerate(BAD_ROWS):
        rows[i + 1].update(override)
    path = write_rows(tmp_path / f"mixed.{fmt}", rows, INTERACTION_COLUMNS)

    summary = ingest(engine, path)

    assert summary.rows_rejected == len(BAD_ROWS)
    assert summary.rows_inserted == 3
    assert summary.rows_read == len(rows)
    rejects = read_rejects(summary)
    assert len(rejects) == len(BAD_ROWS)
    # A CSV row spans one line plus the newlines quoted in its prompt; JSON Lines one line.
    spans = [
        1 + (str(r["prompt"]).count("\n") if fmt == "csv" and r["prompt"] else 0) for r in rows
    ]
    first_line = 2 if fmt == "csv" else 1
    for index, (reject, (_, column, reason)) in enumerate(zip(rejects, BAD_ROWS, strict=True)):
        expected_line = first_line + sum(spans[: index + 1])
        assert reject["file"] == str(path)
        assert int(reject["line"]) == expected_line, reject
        assert reject["column"] == column
        assert reason in reject["reason"]
    stored = {r.event_id for r in interactions_in(engine)}
    assert stored == {rows[0]["event_id"], *(r["event_id"] for r in rows[-2:])}


def test_json_values_of_the_wrong_shape_are_rejected(engine: sa.Engine, tmp_path: Path) -> None:
    rows = [interaction(i) for i in range(4)]
    rows[1]["user_id"] = {"nested": True}
    rows[2]["latency_ms"] = [1, 2]
    rows[3]["complaint"] = True  # JSON booleans are fine
    summary = ingest(engine, write_rows(tmp_path / "shapes.jsonl", rows))
    assert (summary.rows_inserted, summary.rows_rejected) == (2, 2)
    rejects = read_rejects(summary)
    assert [(r["line"], r["column"]) for r in rejects] == [("2", "user_id"), ("3", "latency_ms")]
    assert "expected a string or number, found a JSON dict" in rejects[0]["reason"]


def test_strict_refuses_the_whole_file_on_one_bad_row(engine: sa.Engine, tmp_path: Path) -> None:
    rows = [interaction(i) for i in range(50)]
    rows[42]["feedback"] = 9
    path = write_rows(tmp_path / "one_bad.csv", rows, INTERACTION_COLUMNS)
    with pytest.raises(IngestError, match="--strict") as info:
        ingest(engine, path, strict=True, chunk_rows=1000)
    assert info.value.line == 2 + 42 * 2
    assert info.value.column == "feedback"
    assert_nothing_written(engine)


def test_blank_lines_are_skipped_and_lines_stay_exact(engine: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text(
        "event_id,user_id,timestamp,prompt\ne1,u1,2026-10-01T00:00:00Z,a\n\ne2,u1,not-a-time,b\n"
    )
    summary = ingest(engine, path)
    assert (summary.rows_inserted, summary.rows_rejected, summary.rows_blank) == (1, 1, 1)
    assert read_rejects(summary)[0]["line"] == "4"


def test_exposure_rows_are_validated(engine: sa.Engine, tmp_path: Path) -> None:
    rows = [exposure(i) for i in range(4)]
    rows[1]["attributes"] = "[1, 2]"
    rows[2]["variation_id"] = ""
    path = write_rows(tmp_path / "exposures.csv", rows, EXPOSURE_COLUMNS)
    summary = ingest(engine, path, IngestKind.exposures)
    assert (summary.rows_inserted, summary.rows_rejected) == (2, 2)
    assert [r["column"] for r in read_rejects(summary)] == ["attributes", "variation_id"]


# --- idempotency and resume -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_reingesting_a_file_changes_nothing(engine: sa.Engine, tmp_path: Path, fmt: str) -> None:
    rows = [interaction(i) for i in range(30)]
    rows[7]["timestamp"] = "bad"
    path = write_rows(tmp_path / f"again.{fmt}", rows, INTERACTION_COLUMNS)
    first = ingest(engine, path)
    before = [(r.event_id, r.prompt, r.ingest_run_id) for r in interactions_in(engine)]
    rejects_before = Path(first.rejects_path or "").read_bytes()

    second = ingest(engine, path)

    assert (second.rows_inserted, second.rows_duplicate, second.rows_rejected) == (0, 29, 1)
    assert [(r.event_id, r.prompt, r.ingest_run_id) for r in interactions_in(engine)] == before
    assert second.rejects_path == first.rejects_path
    assert Path(second.rejects_path or "").read_bytes() == rejects_before


def test_duplicates_within_a_file_are_stored_once(engine: sa.Engine, tmp_path: Path) -> None:
    rows = [interaction(i) for i in range(10)] + [interaction(3), interaction(4)]
    summary = ingest(engine, write_rows(tmp_path / "dups.csv", rows))
    assert (summary.rows_inserted, summary.rows_duplicate) == (10, 2)
    assert count(engine, "interactions") == 10


def test_exposure_identity_is_the_instant_not_its_spelling(
    engine: sa.Engine, tmp_path: Path
) -> None:
    rows = [
        exposure(1, timestamp="2026-10-02T10:00:00Z"),
        exposure(1, timestamp="2026-10-02T12:00:00+02:00"),
        exposure(1, timestamp="1790935200000"),
        exposure(1, timestamp="2026-10-02 10:00:00"),
    ]
    summary = ingest(
        engine, write_rows(tmp_path / "same.csv", rows, EXPOSURE_COLUMNS), IngestKind.exposures
    )
    assert (summary.rows_inserted, summary.rows_duplicate) == (1, 3)


class Killed(BaseException):
    """Stands in for SIGKILL: raised between two chunks, nothing after it runs."""


def test_killed_ingest_resumes_without_duplicates_or_loss(
    engine: sa.Engine, tmp_path: Path
) -> None:
    rows = [interaction(i) for i in range(5000)] + [interaction(10)]
    rows[1234]["feedback"] = 5
    rows[4321]["timestamp"] = "nope"
    path = write_rows(tmp_path / "big.csv", rows, INTERACTION_COLUMNS)

    def kill_after_two_chunks(rows_done: int) -> None:
        if rows_done >= 2000:
            raise Killed

    with pytest.raises(Killed):
        ingest(engine, path, chunk_rows=1000, after_chunk=kill_after_two_chunks)
    assert 0 < count(engine, "interactions") < 5000

    summary = ingest(engine, path, chunk_rows=1000)

    assert summary.resumed_from_row >= 2000
    assert (
        summary.rows_read,
        summary.rows_inserted,
        summary.rows_duplicate,
        summary.rows_rejected,
    ) == (5001, 4998, 1, 2)
    assert count(engine, "interactions") == 4998
    assert [r["line"] for r in read_rejects(summary)] == [str(2 + 1234 * 2), str(2 + 4321 * 2)]
    with Session(engine) as session:
        runs = session.exec(select(IngestRun)).all()
    assert [r.status for r in runs] == [IngestStatus.completed]


def test_a_second_ingest_of_the_same_file_waits_its_turn(engine: sa.Engine, tmp_path: Path) -> None:
    from analytics.ingest.locks import exclusive_ingest
    from analytics.ingest.readers import sha256_of

    path = write_rows(tmp_path / "busy.csv", [interaction(i) for i in range(5)])
    with (
        exclusive_ingest(engine, sha256_of(path), path),
        pytest.raises(IngestError, match="another ingest of this file is running"),
    ):
        ingest(engine, path)
    assert count(engine, "interactions") == 0
    assert ingest(engine, path).rows_inserted == 5  # the lock went with its holder


def test_a_file_changed_between_check_and_write_fails_the_run(
    engine: sa.Engine, tmp_path: Path
) -> None:
    path = write_rows(tmp_path / "moving.csv", [interaction(i) for i in range(5)])

    class AppendWhenWritingStarts:
        def phase(self, description: str, total: int | None) -> None:
            if description.startswith("writing"):
                with path.open("a") as handle:
                    handle.write(
                        "late,u1,2026-10-01T00:00:00Z,added after the check" + "," * 7 + "\n"
                    )

        def advance(self, amount: int) -> None:
            pass

    with pytest.raises(IngestError, match="the file changed during the ingest"):
        ingest(engine, path, progress=AppendWhenWritingStarts())
    with Session(engine) as session:
        run = session.exec(select(IngestRun)).one()
    assert run.status == IngestStatus.failed
    assert ingest(engine, path).rows_duplicate == 6  # the settled file completes


def test_a_file_broken_between_check_and_write_fails_the_run(
    engine: sa.Engine, tmp_path: Path
) -> None:
    path = write_rows(tmp_path / "moving.csv", [interaction(i) for i in range(5)])

    class BreakWhenWritingStarts:
        def phase(self, description: str, total: int | None) -> None:
            if description.startswith("writing"):
                with path.open("a") as handle:
                    handle.write("too,few,fields\n")

        def advance(self, amount: int) -> None:
            pass

    with pytest.raises(IngestError, match="the file changed during the ingest: expected 11"):
        ingest(engine, path, progress=BreakWhenWritingStarts())
    with Session(engine) as session:
        assert session.exec(select(IngestRun)).one().status == IngestStatus.failed


def test_progress_is_reported_in_both_passes(engine: sa.Engine, tmp_path: Path) -> None:
    path = write_rows(tmp_path / "p.csv", [interaction(i) for i in range(2500)])
    seen: dict[str, int] = {}

    class Recorder:
        current = ""

        def phase(self, description: str, total: int | None) -> None:
            self.current = description.split()[0]
            seen[self.current] = 0
            seen[self.current + "_total"] = total or 0

        def advance(self, amount: int) -> None:
            seen[self.current] += amount

    ingest(engine, path, progress=Recorder(), chunk_rows=1000)
    assert seen["checking"] == seen["checking_total"] == path.stat().st_size
    assert seen["writing"] == seen["writing_total"] == 2500


# --- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "instant"),
    [
        ("2026-10-01T12:00:00Z", datetime(2026, 10, 1, 12, tzinfo=UTC)),
        ("2026-10-01T14:30:00+02:30", datetime(2026, 10, 1, 12, tzinfo=UTC)),
        ("2026-10-01T07:00:00-05:00", datetime(2026, 10, 1, 12, tzinfo=UTC)),
        ("2026-10-01 12:00:00", datetime(2026, 10, 1, 12, tzinfo=UTC)),
        ("2026-10-01T12:00:00.123456", datetime(2026, 10, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2026-10-01", datetime(2026, 10, 1, tzinfo=UTC)),
        ("1790856000000", datetime(2026, 10, 1, 12, tzinfo=UTC)),
        ("1790856000123", datetime(2026, 10, 1, 12, 0, 0, 123000, tzinfo=UTC)),
    ],
)
def test_timestamps_are_stored_in_utc(
    engine: sa.Engine, tmp_path: Path, written: str, instant: datetime
) -> None:
    ingest(engine, write_rows(tmp_path / "t.csv", [interaction(1, timestamp=written)]))
    assert interactions_in(engine)[0].timestamp == instant


def test_parquet_native_timestamps_and_epoch_integers(engine: sa.Engine, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "event_id": ["a", "b", "c"],
            "user_id": ["u", "u", "u"],
            "timestamp": pa.array(
                [1790856000000, 1790856000000, 1790856000000],
                type=pa.timestamp("ms", tz="Europe/Paris"),
            ),
            "prompt": ["x", "y", "z"],
            "feedback": pa.array([1, None, -1], type=pa.int8()),
            "complaint": pa.array([True, False, None]),
        }
    )
    pq.write_table(table, tmp_path / "typed.parquet")
    naive = table.set_column(2, "timestamp", pa.array([1790856000000] * 3, type=pa.int64()))
    naive = naive.set_column(0, "event_id", pa.array(["d", "e", "f"]))
    pq.write_table(naive, tmp_path / "epoch.parquet")

    ingest(engine, tmp_path / "typed.parquet")
    ingest(engine, tmp_path / "epoch.parquet")

    stored = interactions_in(engine)
    assert {r.timestamp for r in stored} == {datetime(2026, 10, 1, 12, tzinfo=UTC)}
    assert [r.feedback for r in stored[:3]] == [1, None, -1]
    assert [r.complaint for r in stored[:3]] == [True, False, None]
