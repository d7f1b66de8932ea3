"""The aftershock CLI: exit codes, one-line errors, summaries, a real SIGKILL mid-ingest, and
plans: flag values given or pulled, live and record-only plans, one plan per feature."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import run_analysis
from analytics.db import get_engine, head_revision
from analytics.demo import DemoConfig
from analytics.settings import get_settings
from analytics.store import save_analysis
from rollout.cli.app import app
from rollout.store import list_plans, load_plan
from tests.demo_data import load_demo
from tests.factories import INTERACTION_COLUMNS, exposure, interaction, write_rows
from tests.fake_growthbook import API_KEY, FakeGrowthBook
from tests.test_ramp_safety import make_plan


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


# ---------------------------------------------------------------- plans and the ramp


@pytest.fixture
def no_growthbook(cli_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("AFTERSHOCK_GROWTHBOOK_URL", raising=False)
    monkeypatch.delenv("AFTERSHOCK_GROWTHBOOK_API_KEY", raising=False)
    get_settings.cache_clear()
    return cli_env


def test_plan_takes_flag_values_given_or_pulled_and_a_mode(
    no_growthbook: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_growthbook: FakeGrowthBook,
) -> None:
    engine = get_engine(no_growthbook)
    load_demo(engine, tmp_path, DemoConfig(n_users=400, seed=12))
    save_analysis(engine, run_analysis(engine, AnalysisParams("chat-model-upgrade")))
    args = ("plan", "--experiment", "chat-model-upgrade", "--feature", "chat-model")

    code, _, err = run(*args)
    assert code == 1
    message = " ".join(err.split())
    assert "--rollback-value" in message and "--current-value" in message
    assert "aftershock growthbook pull" in message
    assert list_plans(engine) == []

    out_path = tmp_path / "plan.json"
    code, out, err = run(
        *args,
        "--rollback-value",
        "previous-model",
        "--current-value",
        "new-model",
        "--record-only",
        "--exposure-day-cost",
        "60",
        "--out",
        str(out_path),
    )
    assert code == 0, err
    text = " ".join(out.split())
    assert "record-only" in text and "recommended" in text
    for column in ("disruptions", "user-days", "combined", "coverage", "off"):
        assert column in text
    document = json.loads(out_path.read_text())
    assert document["mode"] == "record_only" and document["policy"]["exposure_day_cost"] == 60
    chosen = next(o for o in document["options"] if o["name"] == document["option"])
    assert f"{chosen['expected_second_disruptions']:,.0f}" in text
    assert f"{document['stages'][-1]['cumulative_users']:,}" in text

    # Pulled from GrowthBook, the values need not be given; the plan is live by default.
    experiment = fake_growthbook.add_experiment(
        "chat-model-upgrade", variations=["previous", "new"], weights=[0.5, 0.5]
    )
    rule = fake_growthbook.experiment_rule(
        experiment["id"], ["previous-model", "new-model"], environments=("production",)
    )
    fake_growthbook.add_feature("chat-model", rules=[rule])
    monkeypatch.setenv("AFTERSHOCK_GROWTHBOOK_URL", fake_growthbook.url)
    monkeypatch.setenv("AFTERSHOCK_GROWTHBOOK_API_KEY", API_KEY)
    get_settings.cache_clear()
    assert run("growthbook", "pull")[0] == 0
    code, out, err = run(*args, "--out", str(out_path))
    assert code == 0, err
    document = json.loads(out_path.read_text())
    assert (document["rollback_value"], document["current_value"], document["mode"]) == (
        "previous-model",
        "new-model",
        "live",
    )
    assert "live" in out


def test_growthbook_apply_refuses_a_live_plan_without_growthbook_and_can_supersede(
    no_growthbook: str,
) -> None:
    engine = get_engine(no_growthbook)
    live = make_plan(engine)
    code, _, err = run("growthbook", "apply", "--plan", str(live), "--stage", "0")
    assert code == 1
    assert "AFTERSHOCK_GROWTHBOOK_URL" in err and "AFTERSHOCK_GROWTHBOOK_API_KEY" in err
    plan = load_plan(engine, live)
    assert plan is not None and (plan.status, plan.current_stage) == ("draft", -1)
    code, out, _ = run("growthbook", "apply", "--plan", str(live), "--stage", "0", "--record-only")
    assert code == 0 and "recorded (GrowthBook untouched)" in out

    newer = make_plan(engine, mode="record_only")
    code, _, err = run("growthbook", "apply", "--plan", str(newer), "--stage", "0")
    assert code == 1
    err = " ".join(err.split())
    assert f"plan {live} of feature 'chat-model' is in progress" in err and "--supersede" in err
    code, out, err = run("growthbook", "apply", "--plan", str(newer), "--stage", "0", "--supersede")
    assert code == 0, err
    assert f"plan {live} aborted: superseded by plan {newer}" in out
    assert "recorded (record-only plan: GrowthBook untouched)" in out
    superseded = load_plan(engine, live)
    assert superseded is not None and superseded.status == "aborted"
    code, out, _ = run("guardrails", "--plan", str(newer))
    assert code == 0 and f"plan {newer} (record-only), stage 0" in out


def test_plan_replan_plans_a_started_plan_again(no_growthbook: str, tmp_path: Path) -> None:
    engine = get_engine(no_growthbook)
    load_demo(engine, tmp_path, DemoConfig(n_users=400, seed=12))
    save_analysis(engine, run_analysis(engine, AnalysisParams("chat-model-upgrade")))
    code, _, err = run(
        "plan",
        "--experiment",
        "chat-model-upgrade",
        "--feature",
        "chat-model",
        "--rollback-value",
        "old",
        "--current-value",
        "new",
        "--strategy",
        "uniform_ramp",
    )
    assert code == 0, err
    code, _, err = run("plan", "replan", "1")
    assert code == 1 and "can be re-planned" in err
    assert run("growthbook", "apply", "--plan", "1", "--stage", "0", "--record-only")[0] == 0
    code, _, err = run("plan", "replan", "1", "--expected-version", "1")
    assert code == 1 and "not 1" in err
    code, out, err = run("plan", "replan", "1")
    assert code == 0, err
    assert "plan 1: revision 2" in out
    plan = load_plan(engine, 1)
    assert plan is not None and plan.document["revision"] == 2
    code, _, err = run("plan", "--alpha", "0.1", "replan", "1")
    assert code == 1 and "--alpha" in err
    code, _, err = run("plan")
    assert code == 1 and "--experiment" in err and "--feature" in err


def test_tokens_create_replace_revokes_the_earlier_ones_of_that_name(cli_env: str) -> None:
    from rollout.tokens import list_tokens

    for _ in range(3):
        code, out, _ = run(
            "tokens", "create", "--name", "make-run", "--scope", "admin", "--replace"
        )
        assert code == 0 and out.strip().startswith("ash_")
    code, _, _ = run("tokens", "create", "--name", "other", "--scope", "read")
    tokens = list_tokens(get_engine(cli_env))
    live = [(t.name, t.revoked_at is None) for t in tokens]
    assert live == [("make-run", False), ("make-run", False), ("make-run", True), ("other", True)]
