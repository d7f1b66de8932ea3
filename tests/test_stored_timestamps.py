"""Rows an earlier version stored with absurd timestamps (year 58,729): analyses and plans
refuse naming the remedy, the plan's data end ignores them, ``aftershock db check --remove``
moves them to a file, and an unexpected error in the CLI is one line, not a traceback."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import rollout.cli.app as cli_app
from analytics.analysis.params import build_analysis_params
from analytics.ingest.runner import ingest_file
from analytics.models import IngestKind
from analytics.timestamps import (
    OutOfRangeError,
    accepted_range,
    find_out_of_range,
    remove_out_of_range,
)
from rollout.plans import load_data_end
from tests.factories import EXPOSURE_COLUMNS, INTERACTION_COLUMNS, exposure, interaction, write_rows
from tests.test_cli import run

YEAR_58729_US = 1790856000000 * 1000 * 1000  # epoch milliseconds stored as microseconds twice


def stored(engine: sa.Engine, tmp_path: Path) -> None:
    """Five users' exposures and interactions, then two rows set to year 58,729 as an earlier
    version would have stored them."""
    for kind, rows, columns in (
        (IngestKind.exposures, [exposure(i) for i in range(5)], EXPOSURE_COLUMNS),
        (
            IngestKind.interactions,
            [interaction(i, user_id=f"u{i:03d}") for i in range(5)],
            INTERACTION_COLUMNS,
        ),
    ):
        path = write_rows(tmp_path / f"{kind.value}.jsonl", rows, columns)
        ingest_file(path, kind, engine=engine, rejects_dir=tmp_path / "rejects")
    absurd = (
        str(YEAR_58729_US)
        if engine.dialect.name == "sqlite"
        else "'58729-01-01 00:00:00+00'::timestamptz"
    )
    with engine.begin() as connection:
        connection.execute(
            sa.text(f"UPDATE interactions SET timestamp = {absurd} WHERE event_id = 'evt-000003'")
        )
        connection.execute(
            sa.text(f"UPDATE exposures SET timestamp = {absurd} WHERE user_id = 'u004'")
        )


def test_analyses_and_plans_refuse_naming_the_rows_and_the_remedy(
    engine: sa.Engine, tmp_path: Path
) -> None:
    stored(engine, tmp_path)
    span = accepted_range()

    found = {f.kind: f for f in find_out_of_range(engine, span, "chat-model-upgrade")}
    assert found[IngestKind.interactions].describe() == "1 interaction (e.g. event_id evt-000003)"
    assert found[IngestKind.exposures].rows == 1
    assert "user_id u004" in found[IngestKind.exposures].examples[0]
    assert find_out_of_range(engine, span, "another-experiment") == []

    with pytest.raises(OutOfRangeError, match=r"aftershock db check --remove"):
        build_analysis_params(engine, "chat-model-upgrade")
    # The data end never reads the absurd row as a date.
    assert load_data_end(engine).year == 2026


def test_removal_moves_the_rows_to_a_file_and_leaves_a_readable_database(
    engine: sa.Engine, tmp_path: Path
) -> None:
    stored(engine, tmp_path)
    span = accepted_range()
    out = tmp_path / "moved" / "out-of-range.csv"

    assert remove_out_of_range(engine, span, out) == {"exposures": 1, "interactions": 1}

    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["kind"] for r in rows] == ["exposures", "interactions"]
    assert json.loads(rows[1]["row"])["event_id"] == "evt-000003"
    assert "58729" in rows[1]["stored_timestamp"] or rows[1]["stored_timestamp"] == str(
        YEAR_58729_US
    )
    assert find_out_of_range(engine, span) == []
    build_analysis_params(engine, "chat-model-upgrade")  # no longer refused
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM interactions")).scalar() == 4
    assert remove_out_of_range(engine, span, out) == {"exposures": 0, "interactions": 0}


def test_db_check_lists_then_removes(cli_env: str, engine: sa.Engine, tmp_path: Path) -> None:
    stored(engine, tmp_path)

    code, out, _ = run("db", "check")
    assert code == 1
    assert "1 interaction (e.g. event_id evt-000003)" in out
    assert "aftershock db check --remove" in out

    code, out, _ = run("db", "check", "--remove", "--out", str(tmp_path / "moved.csv"))
    assert code == 0
    assert f"moved 1 exposures, 1 interactions to {tmp_path / 'moved.csv'}" in out.replace("\n", "")

    code, out, _ = run("db", "check")
    assert (code, "every stored timestamp is within") == (
        0,
        out[: len("every stored timestamp is within")],
    )


def test_an_unexpected_error_is_one_line_and_a_traceback_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli_app, "app", broken)
    monkeypatch.setattr(sys, "argv", ["aftershock", "status"])
    with pytest.raises(SystemExit) as exited:
        cli_app.main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) <= 3  # one line, wrapped by the terminal width
    line = " ".join(err.split())
    assert line.startswith("error: unexpected RuntimeError: boom (a bug in Aftershock")
    path = Path(re.search(r"traceback is in (\S+);", line).group(1))  # type: ignore[union-attr]
    assert "Traceback" in path.read_text() and "second line" in path.read_text()
    path.unlink()


def test_an_unexpected_error_in_one_file_does_not_stop_the_others(
    cli_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import analytics.ingest.runner as runner

    real = runner.ingest_file
    first = write_rows(tmp_path / "a.csv", [interaction(1)], INTERACTION_COLUMNS)
    second = write_rows(tmp_path / "b.csv", [interaction(2)], INTERACTION_COLUMNS)

    def flaky(path: Path, *args: object, **kwargs: object) -> object:
        if path == first:
            raise KeyError("internal")
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "ingest_file", flaky)
    code, out, err = run("ingest", "interactions", str(first), str(second))

    assert code == 1
    assert f"failed: {first}: unexpected KeyError: 'internal'" in " ".join(err.split())
    assert f"{second}: 1 rows read, 1 inserted" in out
