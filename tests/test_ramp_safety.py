"""A ramp safe to point at production, through the API on SQLite and PostgreSQL: one plan per
feature in progress (refused, or superseded and audited on both, and settled by the database
under races), live plans never recorded silently and record-only plans never written to
GrowthBook, and forced advances shown as forced with their reason and token."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import run_analysis
from analytics.demo import DemoConfig
from analytics.store import save_analysis, save_growthbook_snapshots
from rollout.api.app import create_app
from rollout.errors import PlanInProgressError
from rollout.growthbook.client import GrowthBookClient
from rollout.growthbook.values import growthbook_variation_values
from rollout.models import PlanEvent
from rollout.planner import Policy, choose, plan_document, plan_rollback
from rollout.ramp import apply_stage
from rollout.store import (
    list_forced_advances,
    list_plans_in_progress,
    load_plan,
    load_plan_events,
    save_plan,
    update_plan_state,
)
from tests.apps import SETTINGS, Api
from tests.demo_data import load_demo
from tests.factories import make_users
from tests.fake_growthbook import API_KEY, FakeGrowthBook, Fault

FEATURE = "chat-model"


def make_plan(
    engine: sa.Engine, *, mode: str = "live", feature: str = FEATURE, n: int = 300
) -> int:
    """An adaptation-aware plan of ``feature`` for ``n`` synthetic users (as
    ``tests.factories.stored_plan``), made ``live`` or ``record_only``; its id."""
    now = datetime(2026, 11, 16, tzinfo=UTC)
    plan = choose(
        plan_rollback(
            make_users(n=n, seed=8),
            experiment_id="chat-model-upgrade",
            feature_key=feature,
            policy=Policy(),
            rollback_value="old-model",
            current_value="new-model",
            as_of=now,
            created_at=now,
        ),
        "adaptation_aware",
    )
    document = plan_document(plan, mode=mode)
    return save_plan(engine, document=document, members=plan.members, analysis_run_id=None)


@pytest.fixture
def api(engine: sa.Engine) -> Iterator[Api]:
    """The API without GrowthBook configured."""
    served = Api(create_app(engine=engine, settings=SETTINGS), engine)
    yield served
    served.close()


@pytest.fixture
def gb_api(engine: sa.Engine, fake_growthbook: FakeGrowthBook) -> Iterator[Api]:
    """The API writing to the fake GrowthBook, which holds the feature."""
    fake_growthbook.add_feature(FEATURE, default_value="new-model", environments=("production",))
    fake_growthbook.add_feature("search", default_value="new-model", environments=("production",))

    def client() -> GrowthBookClient:
        return GrowthBookClient(
            fake_growthbook.url, API_KEY, sleep=lambda _: None, requests_per_minute=100_000
        )

    served = Api(create_app(engine=engine, settings=SETTINGS, client_factory=client), engine)
    yield served
    served.close()


def problem(response: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    if kind is not None:
        assert body["type"] == f"urn:aftershock:problem:{kind}", body
    return body


def advance(
    api: Api, plan_id: int, body: dict[str, Any] | None = None, **kw: Any
) -> httpx.Response:
    """Advance at the plan's current version (read first, as a client does)."""
    version = api.get(f"/v1/plans/{plan_id}").json()["version"]
    return api.post(f"/v1/plans/{plan_id}/advance", body, version=version, **kw)


def trail(engine: sa.Engine, plan_id: int) -> list[tuple[str, str, str]]:
    return [(e.action, e.outcome, e.actor) for e in load_plan_events(engine, plan_id)]


# ---------------------------------------------------------------- one plan per feature


def test_a_second_plan_of_a_feature_cannot_start_while_one_is_in_progress(api: Api) -> None:
    first, second = (
        make_plan(api.engine, mode="record_only"),
        make_plan(api.engine, mode="record_only"),
    )
    other_feature = make_plan(api.engine, mode="record_only", feature="search")
    assert advance(api, first).status_code == 200  # started: stage 0

    refused = problem(advance(api, second), 409, "plan-in-progress")
    assert refused["in_progress_plan_id"] == first
    assert f"plan {first} of feature 'chat-model' is in progress" in refused["detail"]
    assert "supersede" in refused["detail"]
    plan = load_plan(api.engine, second)
    assert plan is not None and (plan.status, plan.version, plan.current_stage) == ("draft", 1, -1)
    [event] = load_plan_events(api.engine, second)
    assert (event.action, event.outcome, event.actor) == ("advance", "refused", "ramp-bot")
    assert event.details["in_progress_plan_id"] == first
    # Another feature's plan is not held up.
    assert advance(api, other_feature).status_code == 200

    # Paused is still in progress; aborted is not.
    version = api.get(f"/v1/plans/{first}").json()["version"]
    paused = api.post(f"/v1/plans/{first}/pause", {"reason": "look"}, version=version)
    assert paused.json()["status"] == "paused"
    problem(advance(api, second), 409, "plan-in-progress")
    api.post(f"/v1/plans/{first}/abort", version=paused.json()["version"])
    started = advance(api, second)
    assert started.status_code == 200 and started.json()["current_stage"] == 0
    assert [p.id for p in list_plans_in_progress(api.engine, FEATURE)] == [second]

    # A paused draft has not started: pausing and resuming it does not touch the rule.
    draft = make_plan(api.engine, mode="record_only")
    paused_draft = api.post(f"/v1/plans/{draft}/pause", version=1)
    assert paused_draft.json()["status"] == "paused"
    resumed = api.post(f"/v1/plans/{draft}/resume", version=paused_draft.json()["version"])
    assert resumed.json()["status"] == "draft"
    assert [p.id for p in list_plans_in_progress(api.engine, FEATURE)] == [second]


def test_supersede_aborts_the_plan_in_progress_and_audits_both(api: Api) -> None:
    old, new = make_plan(api.engine, mode="record_only"), make_plan(api.engine, mode="record_only")
    for _ in range(2):
        assert advance(api, old).status_code == 200  # stages 0 and 1
    problem(advance(api, new, {"supersede": True}, scope="read"), 403)  # needs ramp

    started = advance(api, new, {"supersede": True})
    assert started.status_code == 200, started.text
    assert started.json()["superseded_plan_ids"] == [old]
    assert started.json()["current_stage"] == 0 and started.json()["status"] == "active"

    superseded = api.get(f"/v1/plans/{old}").json()
    assert (superseded["status"], superseded["current_stage"]) == ("aborted", 1)
    abort = api.get("/v1/audit", plan_id=old).json()["data"][0]
    assert (abort["action"], abort["outcome"], abort["actor"]) == ("abort", "ok", "ramp-bot")
    assert abort["details"]["superseded_by"] == new
    assert f"superseded by plan {new}" in abort["details"]["reason"]
    assert abort["details"]["before"]["status"] == "active"
    assert abort["details"]["after"]["status"] == "aborted"
    applied = [e for e in load_plan_events(api.engine, new) if e.action == "apply"]
    assert [(e.outcome, e.details["supersedes"]) for e in applied] == [
        ("started", [old]),
        ("ok", [old]),
    ]
    # The aborted plan takes no more stages; the new one goes on.
    problem(advance(api, old), 409, "refused")
    assert advance(api, new).json()["current_stage"] == 1

    # With nothing in progress, supersede just starts the plan.
    other = make_plan(api.engine, mode="record_only", feature="search")
    alone = advance(api, other, {"supersede": True})
    assert alone.status_code == 200 and alone.json()["superseded_plan_ids"] == []


def test_the_database_refuses_a_second_start_that_slipped_past_the_check(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = make_plan(engine, mode="record_only"), make_plan(engine, mode="record_only")
    apply_stage(engine, first, 0, client=None, environments=["production"])
    # The store alone: the partial unique index refuses a second plan in progress.
    event = PlanEvent(plan_id=second, action="apply", details={})
    with pytest.raises(sa.exc.IntegrityError):
        update_plan_state(
            engine, second, expected_version=1, event=event, changes={"status": "reconciling"}
        )
    # A start racing past the check (it saw no plan in progress) is refused all the same,
    # naming the plan in progress, and changes nothing.
    import rollout.ramp

    real = rollout.ramp.list_plans_in_progress
    calls = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return [] if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(rollout.ramp, "list_plans_in_progress", racing)
    with pytest.raises(PlanInProgressError) as refused:
        apply_stage(engine, second, 0, client=None, environments=["production"])
    assert refused.value.in_progress_plan_id == first
    plan = load_plan(engine, second)
    assert plan is not None and (plan.status, plan.version) == ("draft", 1)
    [event] = load_plan_events(engine, second)  # audited as refused
    assert (event.action, event.outcome, event.details["in_progress_plan_id"]) == (
        "apply",
        "refused",
        first,
    )


def test_concurrent_starts_of_two_plans_of_a_feature_start_exactly_one(api: Api) -> None:
    plans = [make_plan(api.engine, mode="record_only") for _ in range(2)]
    barrier = threading.Barrier(40)

    def start(i: int) -> httpx.Response:
        plan_id = plans[i % 2]
        with httpx.Client(base_url=api.url, timeout=60) as http:
            barrier.wait()
            return http.post(
                f"/v1/plans/{plan_id}/advance",
                json={},
                headers=api.headers("ramp", **{"Idempotency-Key": f"k-{i}", "If-Match": '"1"'}),
            )

    with ThreadPoolExecutor(40) as pool:
        responses = list(pool.map(start, range(40)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1 and statuses.count(409) == 39, statuses
    kinds = {r.json()["type"].rsplit(":", 1)[1] for r in responses if r.status_code == 409}
    assert kinds <= {"version-conflict", "plan-in-progress", "refused"}
    [in_progress] = list_plans_in_progress(api.engine, FEATURE)
    loser = next(p for p in plans if p != in_progress.id)
    plan = load_plan(api.engine, loser)
    assert plan is not None and (plan.status, plan.current_stage) == ("draft", -1)


# ---------------------------------------------------------------- live and record-only


def test_a_live_plan_is_refused_without_growthbook_and_never_recorded(api: Api) -> None:
    plan_id = make_plan(api.engine)  # live
    assert api.get(f"/v1/plans/{plan_id}").json()["mode"] == "live"
    refused = problem(api.post(f"/v1/plans/{plan_id}/advance", version=1), 409)
    assert refused["type"] == "urn:aftershock:problem:growthbook-not-configured"
    assert refused["missing_settings"] == [
        "AFTERSHOCK_GROWTHBOOK_URL",
        "AFTERSHOCK_GROWTHBOOK_API_KEY",
    ]
    for name in refused["missing_settings"]:
        assert name in refused["detail"]
    plan = load_plan(api.engine, plan_id)
    assert plan is not None and (plan.status, plan.version, plan.current_stage) == ("draft", 1, -1)
    assert trail(api.engine, plan_id) == [("advance", "refused", "ramp-bot")]
    ramp = api.get(f"/v1/plans/{plan_id}/ramp").json()
    assert (ramp["mode"], ramp["current_stage"]) == ("live", -1)
    # Recording without GrowthBook is an explicit, audited choice.
    recorded = api.post(f"/v1/plans/{plan_id}/advance", {"dry_run": True}, version=1)
    assert recorded.status_code == 200 and recorded.json()["recorded_only"] is True
    [ok] = [e for e in load_plan_events(api.engine, plan_id) if e.outcome == "ok"]
    assert ok.details["recorded_only"] is True and ok.details["mode"] == "live"


def test_a_record_only_plan_never_writes_growthbook_even_when_configured(
    gb_api: Api, fake_growthbook: FakeGrowthBook
) -> None:
    plan_id = make_plan(gb_api.engine, mode="record_only")
    plan = gb_api.get(f"/v1/plans/{plan_id}").json()
    assert plan["mode"] == "record_only"
    assert gb_api.get(f"/v1/features/{FEATURE}/plans").json()["data"][0]["mode"] == "record_only"
    for stage in (0, 1):
        moved = advance(gb_api, plan_id)
        assert moved.status_code == 200, moved.text
        assert (moved.json()["current_stage"], moved.json()["recorded_only"]) == (stage, True)
        assert moved.json()["mode"] == "record_only"
    assert fake_growthbook.writes == []
    assert gb_api.get(f"/v1/plans/{plan_id}/ramp").json()["mode"] == "record_only"

    # A live plan of another feature is written.
    live = make_plan(gb_api.engine, feature="search")
    written = advance(gb_api, live)
    assert written.status_code == 200 and written.json()["recorded_only"] is False
    assert fake_growthbook.writes


# ---------------------------------------------------------------- forced advances


def test_forced_advances_show_on_the_ramp_with_reason_and_token(api: Api) -> None:
    plan_id = make_plan(api.engine, mode="record_only")
    for _ in range(2):
        advance(api, plan_id)
    ramp = api.get(f"/v1/plans/{plan_id}/ramp").json()
    assert ramp["forced_advances"] == [] and ramp["guardrails"]["action"] == "hold"
    forced = advance(api, plan_id, {"force": True, "reason": "incident 42"}, scope="admin")
    assert forced.status_code == 200 and forced.json()["forced"] is True

    ramp = api.get(f"/v1/plans/{plan_id}/ramp").json()
    [shown] = ramp["forced_advances"]
    assert (shown["stage"], shown["actor"], shown["reason"]) == (2, "admin-bot", "incident 42")
    assert shown["guardrails_action"] == "hold"
    audit = api.get("/v1/audit", plan_id=plan_id).json()["data"]
    event = next(e for e in audit if e["id"] == shown["event_id"])
    assert event["forced"] is True and event["actor"] == "admin-bot"
    assert event["details"]["forced"] is True and event["details"]["reason"] == "incident 42"
    assert [e["forced"] for e in audit].count(True) == 2  # the write started, and applied
    [stored] = list_forced_advances(api.engine, plan_id)
    assert (stored.stage, stored.actor, stored.reason) == (2, "admin-bot", "incident 42")
    # Unforced advances are not marked forced.
    assert not any(
        e["forced"] for e in audit if e["action"] == "apply" and e["actor"] == "ramp-bot"
    )


def test_a_forced_stage_finished_after_a_growthbook_failure_stays_forced(
    gb_api: Api, fake_growthbook: FakeGrowthBook
) -> None:
    plan_id = make_plan(gb_api.engine)
    for _ in range(2):
        assert advance(gb_api, plan_id).status_code == 200
    fake_growthbook.inject(Fault(status=500, writes_only=True, times=1000))
    failed = advance(gb_api, plan_id, {"force": True, "reason": "incident 43"}, scope="admin")
    problem(failed, 502)
    fake_growthbook.faults.clear()
    finished = advance(gb_api, plan_id)  # a ramp token completes the interrupted write
    assert finished.status_code == 200 and finished.json()["current_stage"] == 2
    [shown] = gb_api.get(f"/v1/plans/{plan_id}/ramp").json()["forced_advances"]
    assert (shown["stage"], shown["actor"], shown["reason"]) == (2, "admin-bot", "incident 43")
    last = load_plan_events(gb_api.engine, plan_id)[-1]
    assert (last.actor, last.details["forced"], last.details["forced_by"]) == (
        "ramp-bot",
        True,
        "admin-bot",
    )


# ---------------------------------------------------------------- flag values


def test_flag_values_are_read_from_the_pulled_experiment_rule() -> None:
    experiment = {
        "id": "exp_1",
        "trackingKey": "chat-model-upgrade",
        "variations": [{"variationId": "v0", "key": "0"}, {"variationId": "v1", "key": "1"}],
    }
    ref = {
        "type": "experiment-ref",
        "experimentId": "exp_1",
        "environments": ["production"],
        "variations": [
            {"variationId": "v0", "value": "old"},
            {"variationId": "v1", "value": "new"},
        ],
    }
    feature = {"id": FEATURE, "valueType": "string", "rules": [ref]}
    values = growthbook_variation_values(feature, experiment, "chat-model-upgrade")
    assert values == {"0": ["old"], "1": ["new"]}
    # Typed values are parsed; a rule of another experiment is not read.
    typed = {
        "id": FEATURE,
        "valueType": "json",
        "rules": [
            {**ref, "variations": [{"variationId": "v0", "value": '{"model": "a"}'}]},
            {**ref, "experimentId": "exp_2"},
        ],
    }
    assert growthbook_variation_values(typed, experiment, "chat-model-upgrade") == {
        "0": [{"model": "a"}]
    }
    # Rules of the plan's environments win over the others'.
    staging = {
        **ref,
        "environments": ["staging"],
        "variations": [{"variationId": "v0", "value": "x"}, {"variationId": "v1", "value": "y"}],
    }
    both = {**feature, "rules": [staging, ref]}
    assert growthbook_variation_values(both, experiment, "chat-model-upgrade") == values
    assert growthbook_variation_values(both, experiment, "chat-model-upgrade", ["staging"]) == {
        "0": ["x"],
        "1": ["y"],
    }
    # Inline experiment rules (the older shape, per environment), matched by tracking key.
    inline = {
        "id": FEATURE,
        "valueType": "number",
        "environments": {
            "production": {
                "rules": [
                    {
                        "type": "experiment",
                        "trackingKey": "chat-model-upgrade",
                        "value": [{"value": "1", "weight": 0.5}, {"value": "2", "weight": 0.5}],
                    }
                ]
            }
        },
        "rules": [],
    }
    assert growthbook_variation_values(inline, None, "chat-model-upgrade") == {
        "0": [1],
        "1": [2],
    }
    assert growthbook_variation_values(feature, None, "chat-model-upgrade") == {}


def pull(engine: sa.Engine, fake: FakeGrowthBook) -> None:
    """``aftershock growthbook pull`` from the fake."""
    with GrowthBookClient(fake.url, API_KEY, sleep=lambda _: None) as client:
        save_growthbook_snapshots(engine, client.list_features(), client.list_experiments())


def test_plans_are_made_live_or_record_only_with_given_or_pulled_values(
    api: Api, fake_growthbook: FakeGrowthBook, tmp_path: Path
) -> None:
    load_demo(api.engine, tmp_path, DemoConfig(n_users=400, seed=12))
    save_analysis(api.engine, run_analysis(api.engine, AnalysisParams("chat-model-upgrade")))
    path = f"/v1/features/{FEATURE}/plans"
    base = {"experiment_id": "chat-model-upgrade"}

    # No values and nothing pulled: refused, naming both fields; nothing stored.
    missing = problem(api.post(path, base), 422, "flag-values-required")
    assert {e["field"] for e in missing["errors"]} == {"body.rollback_value", "body.current_value"}
    assert "rollback_value" in missing["detail"] and "current_value" in missing["detail"]
    assert "aftershock growthbook pull" in missing["detail"]
    half = problem(api.post(path, {**base, "rollback_value": "old"}), 422)
    assert [e["field"] for e in half["errors"]] == ["body.current_value"]
    assert api.get(path).json()["count"] == 0

    # Given values, record-only, a weight on exposure.
    made = api.post(
        path,
        {
            **base,
            "rollback_value": "old",
            "current_value": "new",
            "record_only": True,
            "exposure_day_cost": 60,
        },
    )
    assert made.status_code == 201, made.text
    plan = made.json()
    assert (plan["mode"], plan["revision"]) == ("record_only", 1)
    assert plan["option"] in {o["name"] for o in plan["options"]}
    assert sum(o["recommended"] for o in plan["options"]) == 1
    for option in plan["options"]:
        assert option["expected_second_disruptions"] == option["expected_disrupted_users"]
        assert option["combined_cost"] >= option["expected_second_disruptions"]
        assert {
            "exposed_user_days",
            "expected_new_adapters",
            "pareto",
            "fits_deadline",
            "label",
            "timing",
        } <= set(option)
    for stage in plan["stages"]:
        assert 0 <= stage["coverage"] <= stage["cumulative_coverage"] <= 1
        assert stage["cumulative_users"] >= 0 and stage["start_day"] >= 0
        assert {g["metric"] for g in stage["guardrails"]} and all(
            "min_detectable_regression" in g for g in stage["guardrails"]
        )
    document = api.get(f"/v1/plans/{plan['id']}/document").json()
    assert document["mode"] == "record_only" and document["policy"]["exposure_day_cost"] == 60
    assert (document["rollback_value"], document["current_value"]) == ("old", "new")

    # Pulled from GrowthBook: the experiment rule's control and treatment values, live.
    experiment = fake_growthbook.add_experiment(
        "chat-model-upgrade", variations=["previous", "new"], weights=[0.5, 0.5]
    )
    rule = fake_growthbook.experiment_rule(
        experiment["id"], ["previous-model", "new-model"], environments=("production",)
    )
    fake_growthbook.add_feature(FEATURE, rules=[rule])
    pull(api.engine, fake_growthbook)
    pulled = api.post(path, base)
    assert pulled.status_code == 201, pulled.text
    assert pulled.json()["mode"] == "live"
    document = api.get(f"/v1/plans/{pulled.json()['id']}/document").json()
    assert (document["rollback_value"], document["current_value"]) == (
        "previous-model",
        "new-model",
    )
    created = load_plan_events(api.engine, pulled.json()["id"])[0]
    assert created.details["flag_values_from"] == {
        "rollback_value": "growthbook",
        "current_value": "growthbook",
    }
    # A value given wins over the pulled one.
    given = api.post(path, {**base, "current_value": "shim"})
    document = api.get(f"/v1/plans/{given.json()['id']}/document").json()
    assert (document["rollback_value"], document["current_value"]) == ("previous-model", "shim")


# ---------------------------------------------------------------- replans


def test_a_replan_is_a_versioned_audited_ramp_change(api: Api, tmp_path: Path) -> None:
    load_demo(api.engine, tmp_path, DemoConfig(n_users=400, seed=12))
    save_analysis(api.engine, run_analysis(api.engine, AnalysisParams("chat-model-upgrade")))
    body = {
        "experiment_id": "chat-model-upgrade",
        "rollback_value": "old",
        "current_value": "new",
        "record_only": True,
        "strategy": "uniform_ramp",
    }
    made = api.post(f"/v1/features/{FEATURE}/plans", body)
    assert made.status_code == 201, made.text
    plan_id = made.json()["id"]
    path = f"/v1/plans/{plan_id}/replan"
    draft = problem(api.post(path, version=1), 409, "refused")  # nothing applied yet
    assert "can be re-planned" in draft["detail"]
    version = advance(api, plan_id).json()["version"]

    problem(api.post(path), 428)
    problem(api.post(path, version=version, scope="read"), 403)
    problem(api.post(path, version=version + 1), 409, "version-conflict")
    replanned = api.post(path, version=version, key="replan-1")
    assert replanned.status_code == 200, replanned.text
    out = replanned.json()
    assert (out["revision"], out["version"], out["current_stage"]) == (2, version + 1, 0)
    assert out["mode"] == "record_only" and out["observed"]["stage"] == 0
    again = api.post(path, version=version, key="replan-1")
    assert again.json() == out and again.headers["Idempotent-Replayed"] == "true"

    plan = api.get(f"/v1/plans/{plan_id}")
    assert plan.headers["ETag"] == f'"{version + 1}"'
    assert (plan.json()["revision"], plan.json()["reason"]) == (2, out["reason"])
    assert len(plan.json()["stages"]) == out["stages"]
    event = api.get("/v1/audit", plan_id=plan_id).json()["data"][0]
    assert (event["action"], event["outcome"], event["actor"]) == ("replan", "ok", "ramp-bot")
    assert (event["details"]["from_revision"], event["details"]["to_revision"]) == (1, 2)
    # The ramp serves the new revision.
    assert api.get(f"/v1/plans/{plan_id}/ramp").json()["stages"] == out["stages"]
