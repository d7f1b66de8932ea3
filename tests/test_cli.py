"""The aftershock CLI: exit codes, one-line errors, summaries, and a real SIGKILL mid-ingest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from analytics.db import get_engine, head_revision
from analytics.settings import get_settings
from rollout.cli.app import app
from tests.factories import INTERACTION_COLUMNS, exposure, interaction, write_rows


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", database_url)
    monkeypatch.setenv("AFTERSHOCK_REJECTS_DIR", str(tmp_path / "rejects"))
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_ingest_prints_a_summary_per_file(cli_env: str, tmp_path: Path) -> None:
    rows = [interaction(i) for i in range(8)]
    rows[2]["feedback"] = 3
    a = write_rows(tmp_path / "a.csv", rows, INTERACTION_COLUMNS)
    b = write_rows(tmp_path / "b.jsonl", rows[:4], INTERACTION_COLUMNS)

    code, out, _ = run("ingest", "interactions", str(a), str(b))

    assert code == 0
    assert f"{a}: 8 rows read, 7 inserted, 0 duplicate, 1 rejected" in out
    assert f"{b}: 4 rows read, 0 inserted, 3 duplicate, 1 rejected" in out
    assert "feedback: feedback must be -1, 0 or 1" in out
    assert str(tmp_path / "rejects") in out


def test_refused_file_exits_1_with_one_line_and_the_rest_still_ingested(
    cli_env: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("event_id,user_id\ne1,u1\n")
    good = write_rows(tmp_path / "good.csv", [interaction(1)], INTERACTION_COLUMNS)

    code, out, err = run("ingest", "interactions", str(bad), str(good))

    assert code == 1
    refusal = [line for line in err.splitlines() if line.strip()]
    assert refusal == [
        f"refused: {bad}, line 1, column timestamp: missing required column 'timestamp' "
        "(required: event_id, user_id, timestamp, prompt)"
    ]
    assert f"{good}: 1 rows read, 1 inserted" in out


def test_json_output_and_status(cli_env: str, tmp_path: Path) -> None:
    path = write_rows(tmp_path / "e.csv", [exposure(i) for i in range(6)])
    code, out, _ = run("ingest", "exposures", "--json", str(path))
    assert code == 0
    [summary] = json.loads(out)
    assert summary["rows_inserted"] == 6
    assert summary["kind"] == "exposures"

    code, out, _ = run("status")
    assert code == 0
    assert "exposures: 6" in out
    assert "chat-model-upgrade" in out


def test_strict_flag(cli_env: str, tmp_path: Path) -> None:
    rows = [interaction(i) for i in range(4)]
    rows[3]["timestamp"] = "soon"
    path = write_rows(tmp_path / "s.csv", rows, INTERACTION_COLUMNS)
    code, _, err = run("ingest", "interactions", "--strict", str(path))
    assert code == 1
    assert "--strict" in err
    assert "line 8, column timestamp" in err


def test_db_commands(cli_env: str) -> None:
    code, out, _ = run("db", "upgrade")
    assert code == 0
    code, out, _ = run("db", "current")
    head = head_revision(get_engine(cli_env))
    assert f"current: {head}  head: {head}" in out


def test_demo_generate_then_ingest(cli_env: str, tmp_path: Path) -> None:
    code, out, _ = run(
        "demo", "generate", "--users", "60", "--seed", "3", "--out", str(tmp_path / "demo")
    )
    assert code == 0
    code, out, _ = run("ingest", "interactions", str(tmp_path / "demo" / "interactions.csv"))
    assert code == 0
    assert "0 rejected" in out


@pytest.mark.slow
def test_sigkill_mid_ingest_then_rerun_finishes_exactly(cli_env: str, tmp_path: Path) -> None:
    n = 150_000
    table = pa.table(
        {
            "event_id": [f"k{i}" for i in range(n)],
            "user_id": [f"u{i % 97}" for i in range(n)],
            "timestamp": ["2026-10-01T00:00:00Z"] * n,
            "prompt": ["short prompt"] * n,
        }
    )
    path = tmp_path / "many.csv"
    pa_csv.write_csv(table, path)
    env = {**os.environ, "AFTERSHOCK_DATABASE_URL": cli_env, "AFTERSHOCK_INGEST_CHUNK_ROWS": "1000"}
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from rollout.cli.app import main; main()",
            "ingest",
            "interactions",
            str(path),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    engine = get_engine(cli_env)
    done = 0
    deadline = time.monotonic() + 120
    try:
        while done < 5000 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
            with engine.connect() as connection:
                done = connection.execute(
                    sa.text("SELECT coalesce(max(rows_done), 0) FROM ingest_runs")
                ).scalar_one()
        assert child.poll() is None, "the ingest finished before it could be killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    with engine.connect() as connection:
        partial = connection.execute(sa.text("SELECT count(*) FROM interactions")).scalar_one()
    assert 0 < partial < n

    code, out, _ = run("ingest", "interactions", str(path))

    assert code == 0
    assert "resumed at row" in out
    with engine.connect() as connection:
        stored = connection.execute(
            sa.text("SELECT count(DISTINCT event_id), count(*) FROM interactions")
        ).one()
        runs = connection.execute(
            sa.text("SELECT status, rows_inserted, rows_duplicate FROM ingest_runs")
        ).all()
    assert tuple(stored) == (n, n)
    assert [tuple(r) for r in runs] == [("completed", n, 0)]
