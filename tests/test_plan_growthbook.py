"""A stored plan's stages written to a (fake, spec-validating) GrowthBook with the real client:
what GrowthBook then serves, evaluated by the official SDK, is what the plan says; a failure
between writes leaves the plan at its previous stage and says what to re-run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from growthbook import GrowthBook

from analytics.analysis.params import build_analysis_params
from analytics.demo import DemoConfig
from analytics.settings import get_settings
from rollout.growthbook.client import GrowthBookClient, GrowthBookError
from rollout.planner import Policy, choose, plan_document, plan_rollback
from rollout.ramp import apply_stage
from rollout.store import load_plan, load_plan_events, save_plan
from tests.apps import run
from tests.demo_data import load_demo
from tests.factories import make_users
from tests.fake_growthbook import API_KEY, FakeGrowthBook, Fault

FEATURE = "chat-model"
NOW = datetime(2026, 11, 16, tzinfo=UTC)
ENVIRONMENTS = ["production"]


def values(payload: dict[str, Any], users: list[str]) -> list[Any]:
    served = []
    for user in users:
        gb = GrowthBook(
            attributes={"id": user},
            features=payload["features"],
            saved_groups=payload["savedGroups"],
        )
        served.append(gb.get_feature_value(FEATURE, "unset"))
        gb.destroy()
    return served


@pytest.fixture
def stored_plan(engine: sa.Engine) -> tuple[int, dict[str, Any]]:
    users = make_users(n=1500, seed=4)
    plan = choose(
        plan_rollback(
            users,
            experiment_id="exp",
            feature_key=FEATURE,
            policy=Policy(bridge_value="bridge-model"),
            rollback_value="old-model",
            current_value="new-model",
            as_of=NOW,
            created_at=NOW,
        ),
        "adaptation_aware",
    )
    document = plan_document(plan, environments=ENVIRONMENTS)
    return save_plan(
        engine, document=document, members=plan.members, analysis_run_id=None
    ), document


def client_for(fake: FakeGrowthBook) -> GrowthBookClient:
    # The per-minute limit is tested with the client; here it would only make the test wait.
    return GrowthBookClient(
        fake.url, API_KEY, sleep=lambda _: None, timeout=2.0, requests_per_minute=100_000
    )


def test_growthbook_serves_what_the_plan_says_at_every_stage(
    engine: sa.Engine, fake_growthbook: FakeGrowthBook, stored_plan: tuple[int, dict[str, Any]]
) -> None:
    plan_id, document = stored_plan
    fake_growthbook.add_feature(FEATURE, default_value="new-model", environments=("production",))
    users = sorted(
        {u for g in document["stages"][-1]["growthbook"]["savedGroups"].values() for u in g}
    )
    users = [*users[::3], "never-exposed-1", "never-exposed-2"]
    with client_for(fake_growthbook) as client:
        for stage in document["stages"]:
            apply_stage(
                engine, plan_id, stage["index"], client=client, environments=ENVIRONMENTS, now=NOW
            )
            served = values(fake_growthbook.sdk_payload("production"), users)
            assert served == values(stage["growthbook"], users), stage["index"]
    assert set(served[:-2]) == {"old-model"}
    plan = load_plan(engine, plan_id)
    assert plan is not None and plan.status == "completed"
    # Stages re-applied write nothing new: the rules are already live.
    writes = len(fake_growthbook.writes)
    with client_for(fake_growthbook) as client:
        last = document["stages"][-1]["index"]
        apply_stage(engine, plan_id, last, client=client, environments=ENVIRONMENTS, now=NOW)
    assert len(fake_growthbook.writes) == writes


def test_a_failure_between_writes_keeps_the_plan_at_its_stage_and_says_what_to_rerun(
    engine: sa.Engine, fake_growthbook: FakeGrowthBook, stored_plan: tuple[int, dict[str, Any]]
) -> None:
    plan_id, document = stored_plan
    fake_growthbook.add_feature(FEATURE, default_value="new-model", environments=("production",))
    with client_for(fake_growthbook) as client:
        apply_stage(engine, plan_id, 0, client=client, environments=ENVIRONMENTS, now=NOW)
        live_before = fake_growthbook.sdk_payload("production")
        # The saved groups are written, then every later write fails.
        fake_growthbook.inject(Fault(status=500, writes_only=True, skip=1, times=1000))
        with pytest.raises(GrowthBookError) as failure:
            apply_stage(engine, plan_id, 1, client=client, environments=ENVIRONMENTS, now=NOW)
    assert fake_growthbook.sdk_payload("production") == live_before
    plan = load_plan(engine, plan_id)
    assert plan is not None and (plan.current_stage, plan.status) == (0, "reconciling")
    assert plan.pending_stage == 1
    event = load_plan_events(engine, plan_id)[-1]
    assert (event.action, event.stage, event.outcome) == ("apply", 1, "failed")
    assert event.details["rerun"] == f"aftershock growthbook apply --plan {plan_id} --stage 1"
    assert failure.value.rerun
    fake_growthbook.faults.clear()
    with client_for(fake_growthbook) as client:  # re-running converges
        apply_stage(engine, plan_id, 1, client=client, environments=ENVIRONMENTS, now=NOW)
    users = document["stages"][1]["growthbook"]["savedGroups"]
    sample = sorted({u for g in users.values() for u in g})[::7]
    assert values(fake_growthbook.sdk_payload("production"), sample) == values(
        document["stages"][1]["growthbook"], sample
    )
    plan = load_plan(engine, plan_id)
    assert plan is not None and plan.current_stage == 1


def test_pull_stores_growthbook_experiments_and_analyze_uses_their_split(
    engine: sa.Engine,
    database_url: str,
    fake_growthbook: FakeGrowthBook,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    fake_growthbook.add_experiment(
        "chat-model-upgrade", variations=["old model", "new model"], weights=[0.5, 0.5]
    )
    fake_growthbook.add_feature(FEATURE)
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", database_url)
    monkeypatch.setenv("AFTERSHOCK_GROWTHBOOK_URL", fake_growthbook.url)
    monkeypatch.setenv("AFTERSHOCK_GROWTHBOOK_API_KEY", API_KEY)
    get_settings.cache_clear()
    try:
        code, stdout, stderr = run("growthbook", "pull")
        assert code == 0, stderr
        assert "experiments: 1 fetched, 1 changed" in stdout
        code, stdout, _ = run("growthbook", "pull")
        assert "experiments: 1 fetched, 0 changed" in stdout  # stored once per definition
        assert API_KEY not in stdout + stderr
        params = build_analysis_params(engine, "chat-model-upgrade")
        assert params.weights == (0.5, 0.5)
        assert params.variation_names == (("0", "old model"), ("1", "new model"))
        load_demo(engine, tmp_path, DemoConfig(n_users=300, seed=3))
        code, _, stderr = run(
            "analyze", "--experiment", "chat-model-upgrade", "--out", str(tmp_path)
        )
        assert code == 0, stderr
        document = json.loads((tmp_path / "analysis.json").read_text())
        assert document["variation_names"] == {"0": "old model", "1": "new model"}
    finally:
        get_settings.cache_clear()


def test_cli_dry_run_prints_the_exact_requests_and_writes_nothing(
    engine: sa.Engine,
    database_url: str,
    fake_growthbook: FakeGrowthBook,
    stored_plan: tuple[int, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan_id, _ = stored_plan
    fake_growthbook.add_feature(FEATURE, default_value="new-model", environments=("production",))
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", database_url)
    monkeypatch.setenv("AFTERSHOCK_GROWTHBOOK_URL", fake_growthbook.url)
    monkeypatch.setenv("AFTERSHOCK_GROWTHBOOK_API_KEY", API_KEY)
    get_settings.cache_clear()
    try:
        code, _, stderr = run(
            "growthbook", "apply", "--plan", str(plan_id), "--stage", "1", "--dry-run"
        )
    finally:
        get_settings.cache_clear()
    assert code == 0, stderr
    assert "POST" in stderr and "/v1/saved-groups" in stderr and "Bearer ***" in stderr
    assert API_KEY not in stderr
    assert fake_growthbook.writes == []
    plan = load_plan(engine, plan_id)
    assert plan is not None and plan.current_stage == -1  # nothing recorded either
