"""The planner on the demo story, end to end through the CLI: plan, apply stages, guardrails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from analytics.settings import get_settings
from rollout.growthbook.rules import is_rolled_back
from rollout.store import load_plan, load_plan_events
from tests.apps import run
from tests.databases import DemoDatabases
from tests.demo_data import MAKE_RUN_DEMO


@pytest.fixture
def demo(engine: sa.Engine, demo_databases: DemoDatabases) -> pd.DataFrame:
    """The demo of `make run` (3,000 users, seed 7), ingested and analysed: a fresh copy of
    the session's in the test's database. Its ground truth."""
    return demo_databases.restore(MAKE_RUN_DEMO, engine).truth


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", database_url)
    monkeypatch.delenv("AFTERSHOCK_GROWTHBOOK_URL", raising=False)
    monkeypatch.delenv("AFTERSHOCK_GROWTHBOOK_API_KEY", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_recommended_plan_spares_adapted_users_on_the_demo(
    demo: pd.DataFrame, cli: None, engine: sa.Engine, tmp_path: Path
) -> None:
    out = tmp_path / "plan.json"
    code, stdout, stderr = run(
        "plan", "--experiment", "chat-model-upgrade", "--feature", "chat-model", "--out", str(out)
    )
    assert code == 0, stderr
    plan = json.loads(out.read_text())
    expected = {o["strategy"]: o["expected_disrupted_users"] for o in plan["options"]}
    print("expected disrupted users on the demo:", expected)
    assert plan["strategy"] == "adaptation_aware"
    assert expected["adaptation_aware"] < expected["uniform_ramp"] < expected["immediate"]
    for figure in expected.values():
        assert f"{figure:,.0f}" in " ".join(stdout.split())  # the figures are shown

    # The first stage moves nobody who has used the new model: it stops new enrolments.
    first = plan["stages"][0]
    assert (first["kind"], first["users"]) == ("freeze", 0)
    adaptive = set(demo.loc[demo["adaptive"], "user_id"])
    [rule] = first["growthbook"]["features"]["chat-model"]["rules"]
    groups = first["growthbook"]["savedGroups"]
    assert rule["condition"] == {"$and": [{"id": {"$notInGroup": g}} for g in sorted(groups)]}
    # The first stage that moves treated users moves the least adapted: truly adaptive users
    # are rarer there than among the treated users as a whole.
    second = plan["stages"][1]
    members = set(groups["aftershock-chat-model-least-adapted"])
    moved = {u for u in members if is_rolled_back("chat-model", u, second["coverage"])}
    treated = set(demo.loc[demo["variation"] == 1, "user_id"])
    share_moved = len(moved & adaptive) / len(moved)
    assert share_moved < 0.5 * len(treated & adaptive) / len(treated)
    assert len(moved) == second["users"]


def test_stages_are_applied_in_order_and_judged(
    demo: pd.DataFrame, cli: None, engine: sa.Engine
) -> None:
    code, _, stderr = run("plan", "--experiment", "chat-model-upgrade", "--feature", "chat-model")
    assert code == 0, stderr
    code, _, stderr = run("guardrails", "--plan", "1")
    assert code == 1 and "no stage applied yet" in stderr
    code, _, stderr = run("growthbook", "apply", "--plan", "1", "--stage", "1", "--record-only")
    assert code == 1 and "next stage to apply is 0" in stderr
    # Without GrowthBook configured, a dry run prints the request bodies it would send.
    code, stdout, stderr = run("growthbook", "apply", "--plan", "1", "--stage", "1", "--dry-run")
    assert code == 0 and "not configured" in stderr
    assert json.loads(stdout)["rules"][0]["type"] == "rollout"
    code, _, stderr = run("growthbook", "apply", "--plan", "1", "--stage", "0")
    assert code == 1 and "AFTERSHOCK_GROWTHBOOK_URL" in stderr
    for stage in (0, 1):
        code, stdout, stderr = run(
            "growthbook", "apply", "--plan", "1", "--stage", str(stage), "--record-only"
        )
        assert code == 0 and "recorded" in stdout, stderr
    code, stdout, _ = run("guardrails", "--plan", "1", "--json")
    decision = json.loads(stdout)
    assert decision["action"] == "hold"  # the stage was applied a moment ago
    plan = load_plan(engine, 1)
    assert plan is not None and (plan.current_stage, plan.status, plan.version) == (1, "active", 5)
    actions = [(e.action, e.stage, e.outcome) for e in load_plan_events(engine, 1)]
    assert actions == [
        ("create", None, "ok"),
        ("apply", 0, "started"),
        ("apply", 0, "ok"),
        ("apply", 1, "started"),
        ("apply", 1, "ok"),
        ("guardrails", 1, "ok"),
    ]
