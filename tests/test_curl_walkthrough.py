"""The README's curl walkthrough (docs/rollback_with_curl.sh) drives a rollback from plan to
last stage against a running API writing to (the fake) GrowthBook: the plan is live."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import run_analysis
from analytics.demo import DemoConfig
from analytics.store import save_analysis
from rollout.api.app import create_app
from rollout.growthbook.client import GrowthBookClient
from rollout.store import list_plans, load_plan_events
from tests.apps import SETTINGS, Api
from tests.demo_data import load_demo
from tests.fake_growthbook import API_KEY, FakeGrowthBook

SCRIPT = Path(__file__).parent.parent / "docs" / "rollback_with_curl.sh"


@pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("jq")),
    reason="needs curl and jq (apt-get install curl jq)",
)
def test_the_curl_walkthrough_rolls_back_to_the_last_stage(
    engine: sa.Engine, tmp_path: Path, fake_growthbook: FakeGrowthBook
) -> None:
    load_demo(engine, tmp_path, DemoConfig(n_users=400, seed=14))
    save_analysis(engine, run_analysis(engine, AnalysisParams("chat-model-upgrade")))
    fake_growthbook.add_feature("chat-model", environments=("production",))

    def client() -> GrowthBookClient:
        return GrowthBookClient(
            fake_growthbook.url, API_KEY, sleep=lambda _: None, requests_per_minute=100_000
        )

    api = Api(create_app(engine=engine, settings=SETTINGS, client_factory=client), engine)
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT)],
            env={
                "PATH": "/usr/bin:/bin",
                "AFTERSHOCK_API": api.url,
                "TOKEN": api.tokens["admin"],
                "FORCE_REASON": "walkthrough test",
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        api.close()
    assert done.returncode == 0, done.stderr + done.stdout
    [plan] = list_plans(engine)
    assert plan.id is not None and plan.status == "completed"
    assert plan.current_stage == len(plan.document["stages"]) - 1
    assert f"plan {plan.id}:" in done.stdout and "applied" in done.stdout
    events = load_plan_events(engine, plan.id)
    applied = [e for e in events if e.action == "apply" and e.outcome == "ok"]
    assert [e.stage for e in applied] == list(range(len(plan.document["stages"])))
    assert not any(e.details["recorded_only"] for e in applied)  # every stage was written
    rules = fake_growthbook.sdk_payload("production")["features"]["chat-model"]["rules"]
    assert rules  # the last stage's rules are live
    if len(applied) > 1:  # every stage after the first held: the holds were forced, and audited
        forced = [e for e in applied if e.details.get("forced")]
        assert forced and all(e.details["reason"] == "walkthrough test" for e in forced)
        assert {e.actor for e in forced} == {"admin-bot"}
