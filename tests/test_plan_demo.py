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

PLAN_ARGS = (
    "--experiment",
    "chat-model-upgrade",
    "--feature",
    "chat-model",
    "--rollback-value",
    "previous-model",
    "--current-value",
    "new-model",
)


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


def test_on_the_demo_users_who_did_not_adapt_leave_within_days_and_adapted_ones_later(
    demo: pd.DataFrame, cli: None, engine: sa.Engine, tmp_path: Path
) -> None:
    out = tmp_path / "plan.json"
    code, stdout, stderr = run("plan", *PLAN_ARGS, "--out", str(out))
    assert code == 0, stderr
    plan = json.loads(out.read_text())
    [chosen] = [o for o in plan["options"] if o["recommended"]]
    print("the demo's recommendation:", plan["reason"])
    assert plan["strategy"] == "adaptation_aware" and chosen["name"] == plan["option"]
    timing = chosen["timing"]
    assert timing["least_adapted"]["last_day"] <= 2
    assert timing["adapted"]["first_day"] >= timing["least_adapted"]["last_day"]
    assert timing["adapted"]["last_day"] > timing["least_adapted"]["last_day"] + 3
    immediate = next(o for o in plan["options"] if o["strategy"] == "immediate")
    assert chosen["combined_cost"] < immediate["combined_cost"]
    assert chosen["expected_second_disruptions"] < immediate["expected_second_disruptions"]
    shown = " ".join(stdout.split())
    assert f"{chosen['combined_cost']:,.0f}" in shown and "exposed user-days" in shown

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
    code, _, stderr = run("plan", *PLAN_ARGS)
    assert code == 0, stderr
    code, _, stderr = run("guardrails", "--plan", "1")
    assert code == 1 and "no stage applied yet" in stderr
    code, _, stderr = run("growthbook", "apply", "--plan", "1", "--stage", "1", "--record-only")
    assert code == 1 and "next stage to apply is 0" in stderr
    # Without GrowthBook configured, a dry run prints the request bodies it would send.
    code, stdout, stderr = run("growthbook", "apply", "--plan", "1", "--stage", "1", "--dry-run")
    assert code == 0 and "not configured" in stderr
    stage_one = json.loads(stdout)["rules"][0]
    assert (
        stage_one["type"] == "force"
        and "stage 1, least_adapted rollback" in stage_one["description"]
    )
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
        ("apply", -1, "refused"),  # stage 1 before stage 0
        ("apply", -1, "refused"),  # a live plan, and GrowthBook is not configured
        ("apply", 0, "started"),
        ("apply", 0, "ok"),
        ("apply", 1, "started"),
        ("apply", 1, "ok"),
        ("guardrails", 1, "ok"),
    ]
