"""The flag-ramp API over httpx, on SQLite and PostgreSQL: every endpoint, scopes and tokens,
idempotent replays, version preconditions, GrowthBook failures, and a 50-way concurrent
advance against a running server."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from analytics.demo import DemoConfig
from rollout.api.app import create_app
from rollout.growthbook.client import GrowthBookClient
from rollout.store import load_plan, load_plan_events, load_plan_members
from rollout.tokens import create_token, revoke_token
from tests.apps import SETTINGS, Api
from tests.demo_data import load_demo
from tests.factories import stored_plan
from tests.fake_growthbook import API_KEY, FakeGrowthBook, Fault
from tests.test_ramp_safety import make_plan

FEATURE = "chat-model"


@pytest.fixture
def api(engine: sa.Engine) -> Iterator[Api]:
    served = Api(create_app(engine=engine, settings=SETTINGS), engine)
    yield served
    served.close()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["type"].startswith("urn:aftershock:problem:")
    return dict(body)


def test_health_is_open_and_everything_else_needs_a_valid_token(api: Api) -> None:
    assert api.get("/v1/health", scope=None).json() == {"status": "ok", "checks": {}}
    plan_id = stored_plan(api.engine)
    paths = ["/v1/ready", "/v1/experiments", f"/v1/plans/{plan_id}", "/v1/audit"]
    for path in paths:
        body = problem(api.get(path, scope=None), 401)
        assert "Bearer" in body["detail"]
        assert api.get(path).status_code == 200, path
    bad = api.http.get("/v1/experiments", headers={"Authorization": "Bearer ash_not-a-token"})
    problem(bad, 401)
    token_id = create_token(api.engine, "leaver", ["admin"])
    revoke_token(api.engine, token_id[0].id or 0)
    revoked = api.http.get("/v1/experiments", headers={"Authorization": f"Bearer {token_id[1]}"})
    problem(revoked, 401)
    # Scopes: read cannot ramp; ramp cannot force; admin can do everything.
    problem(api.post(f"/v1/plans/{plan_id}/pause", scope="read", version=1), 403)
    forced = api.post(
        f"/v1/plans/{plan_id}/advance", {"force": True, "reason": "x"}, scope="ramp", version=1
    )
    assert "admin" in problem(forced, 403)["detail"]
    refused = api.get("/v1/audit", plan_id=plan_id).json()["data"]  # and both are audited
    assert [(e["action"], e["outcome"], e["actor"]) for e in refused] == [
        ("advance", "refused", "ramp-bot"),
        ("pause", "refused", "read-bot"),
    ]
    assert api.get("/v1/ready", scope="admin").json()["checks"] == {
        "database": "ok",
        "growthbook": "not configured",
    }


def test_the_docs_page_and_its_assets_are_served_without_internet(api: Api) -> None:
    page = api.http.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/docs/assets/") for s in sources), sources
    for source in sources:
        asset = api.http.get(source)
        assert asset.status_code == 200 and len(asset.content) > 500, source
    redoc = api.http.get("/redoc")
    assert redoc.status_code == 200 and "cdn" not in redoc.text.lower()


def test_analysis_and_plans_from_the_api(api: Api, tmp_path: Path) -> None:
    problem(api.get("/v1/experiments/chat-model-upgrade/analysis"), 404)
    load_demo(api.engine, tmp_path, DemoConfig(n_users=400, seed=12))
    experiments = api.get("/v1/experiments").json()
    assert experiments["count"] == 1 and experiments["data"][0]["latest_analysis_id"] is None
    created = api.post("/v1/experiments/chat-model-upgrade/analysis")
    assert created.status_code == 201, created.text
    stored = api.get("/v1/experiments/chat-model-upgrade/analysis").json()
    assert stored["id"] == created.json()["id"] and stored["srm"] == created.json()["srm"]

    body = {"experiment_id": "chat-model-upgrade", "rollback_value": "old", "current_value": "new"}
    response = api.post(f"/v1/features/{FEATURE}/plans", body, key="plan-1")
    assert response.status_code == 201, response.text
    plan = response.json()
    assert plan["strategy"] in ("adaptation_aware", "uniform_ramp", "immediate")
    assert {o["strategy"] for o in plan["options"]} == {
        "immediate",
        "uniform_ramp",
        "adaptation_aware",
    }
    # The same key replays the answer and creates nothing more; another body is refused.
    again = api.post(f"/v1/features/{FEATURE}/plans", body, key="plan-1")
    assert again.status_code == 201 and again.json() == plan
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.get(f"/v1/features/{FEATURE}/plans").json()["count"] == 1
    problem(api.post(f"/v1/features/{FEATURE}/plans", {**body, "alpha": 0.1}, key="plan-1"), 422)
    problem(api.post(f"/v1/features/{FEATURE}/plans", body, key=None), 400)
    invalid = problem(api.post(f"/v1/features/{FEATURE}/plans", {**body, "alpha": 2}), 422)
    assert invalid["errors"][0]["field"] == "body.alpha"
    missing = problem(api.post(f"/v1/features/{FEATURE}/plans", {"alpha": 0.1}), 422)
    assert "body.experiment_id" in missing["detail"]
    unknown = api.post(f"/v1/features/{FEATURE}/plans", {**body, "experiment_id": "nope"})
    assert (
        "'nope' has no exposures; experiments with exposures: 'chat-model-upgrade'"
        in (problem(unknown, 409)["detail"])
    )
    named = api.post(f"/v1/features/{FEATURE}/plans", {**body, "analysis_id": 999})
    assert "has no analysis 999" in problem(named, 404)["detail"]

    one = api.get(f"/v1/plans/{plan['id']}")
    assert one.headers["ETag"] == '"1"' and one.json()["stages"] == plan["stages"]
    document = api.get(f"/v1/plans/{plan['id']}/document").json()
    assert document["stages"][0]["growthbook"]["features"][FEATURE]
    user = load_plan_members(api.engine, plan["id"])[0]
    cohort = api.get(f"/v1/users/{user}/cohort").json()
    assert cohort["plan_id"] == plan["id"] and cohort["rolled_back"] is False
    assert cohort["adaptation_label"] in (
        "unadapted",
        "partial",
        "adapted",
        "new",
        "insufficient_data",
    )


def test_advance_follows_the_hold_and_guardrails_and_every_change_is_audited(api: Api) -> None:
    plan_id = make_plan(api.engine, mode="record_only", n=1200)
    path = f"/v1/plans/{plan_id}"
    problem(api.post(f"{path}/advance"), 428)
    problem(api.post(f"{path}/advance", version=7), 409)
    first = api.post(f"{path}/advance", version=1)  # stage 0: stop new enrolments
    assert first.status_code == 200, first.text
    assert first.json()["current_stage"] == 0 and first.json()["recorded_only"] is True
    version = first.json()["version"]
    first = api.post(f"{path}/advance", version=version)  # stage 1
    assert first.json()["current_stage"] == 1
    version = first.json()["version"]
    ramp = api.get(f"{path}/ramp").json()
    stage_1 = api.get(f"{path}/document").json()["stages"][1]
    assert ramp["serving"] == stage_1["serving"] and ramp["forced_advances"] == []
    assert ramp["guardrails"]["action"] == "hold" and ramp["next_advance_at"] is not None
    # Too early: refused, with the figures, and audited.
    refused = problem(api.post(f"{path}/advance", version=version), 409)
    assert refused["guardrails"]["action"] == "hold"
    forced = api.post(
        f"{path}/advance", {"force": True, "reason": "incident 42"}, scope="admin", version=version
    )
    assert forced.status_code == 200 and forced.json()["current_stage"] == 2
    version = forced.json()["version"]
    paused = api.post(f"{path}/pause", {"reason": "weekend"}, version=version)
    assert paused.json()["status"] == "paused"
    problem(api.post(f"{path}/advance", version=paused.json()["version"]), 409)
    problem(api.post(f"{path}/pause", version=paused.json()["version"]), 409)
    resumed = api.post(f"{path}/resume", version=paused.json()["version"])
    assert resumed.json()["status"] == "active"
    aborted = api.post(f"{path}/abort", {"reason": "done"}, version=resumed.json()["version"])
    assert aborted.json()["status"] == "aborted"

    audit = api.get("/v1/audit", plan_id=plan_id).json()["data"]
    trail = [(e["action"], e["outcome"], e["actor"]) for e in reversed(audit)]
    assert trail == [
        ("advance", "refused", "ramp-bot"),  # version 7
        ("apply", "started", "ramp-bot"),
        ("apply", "ok", "ramp-bot"),
        ("apply", "started", "ramp-bot"),
        ("apply", "ok", "ramp-bot"),
        ("advance", "refused", "ramp-bot"),  # the hold
        ("apply", "started", "admin-bot"),
        ("apply", "ok", "admin-bot"),
        ("pause", "ok", "ramp-bot"),
        ("advance", "refused", "ramp-bot"),  # paused
        ("pause", "refused", "ramp-bot"),
        ("resume", "ok", "ramp-bot"),
        ("abort", "ok", "ramp-bot"),
    ]
    forced_event = next(e for e in audit if e["actor"] == "admin-bot" and e["outcome"] == "ok")
    assert forced_event["details"]["forced"] is True
    assert forced_event["details"]["reason"] == "incident 42"
    assert forced_event["details"]["guardrails"]["action"] == "hold"
    assert forced_event["details"]["before"]["current_stage"] == 1
    assert forced_event["details"]["after"]["current_stage"] == 2
    hold = next(e for e in audit if e["outcome"] == "refused" and "guardrails" in e["details"])
    assert hold["details"]["guardrails"]["checks"]


def test_idempotent_replay_changes_nothing_again(api: Api) -> None:
    plan_id = make_plan(api.engine, mode="record_only", n=1200)
    first = api.post(f"/v1/plans/{plan_id}/advance", key="advance-once", version=1)
    again = api.post(f"/v1/plans/{plan_id}/advance", key="advance-once", version=1)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    plan = load_plan(api.engine, plan_id)
    assert plan is not None and plan.current_stage == 0
    # Another token's key space is its own.
    other = api.post(f"/v1/plans/{plan_id}/advance", scope="admin", key="advance-once", version=1)
    problem(other, 409)


def test_a_growthbook_failure_answers_502_and_a_retry_completes(
    engine: sa.Engine, fake_growthbook: FakeGrowthBook, request: pytest.FixtureRequest
) -> None:
    fake_growthbook.add_feature(FEATURE, default_value="new-model", environments=("production",))

    def client() -> GrowthBookClient:
        return GrowthBookClient(
            fake_growthbook.url, API_KEY, sleep=lambda _: None, requests_per_minute=100_000
        )

    api = Api(create_app(engine=engine, settings=SETTINGS, client_factory=client), engine)
    request.addfinalizer(api.close)
    plan_id = stored_plan(engine)
    fake_growthbook.inject(Fault(status=500, writes_only=True, times=1000))
    failed = problem(api.post(f"/v1/plans/{plan_id}/advance", version=1), 502)
    assert failed["rerun"] and "GrowthBook" in failed["title"]
    plan = load_plan(engine, plan_id)
    assert plan is not None and (plan.current_stage, plan.status) == (-1, "reconciling")
    assert load_plan_events(engine, plan_id)[-1].outcome == "failed"
    fake_growthbook.faults.clear()
    retried = api.post(f"/v1/plans/{plan_id}/advance", version=plan.version)
    assert retried.status_code == 200, retried.text
    assert retried.json()["current_stage"] == 0 and retried.json()["recorded_only"] is False
    rules = fake_growthbook.sdk_payload("production")["features"][FEATURE]["rules"]
    # The freeze rule: everyone outside the plan's saved groups (GrowthBook writes "none of"
    # as $nor of $inGroup; the plan's own fragment as $and of $notInGroup: the same users).
    assert len(rules) == 1 and "$nor" in rules[0]["condition"]


@pytest.mark.parametrize("force", [False, True], ids=["asked", "forced"])
@pytest.mark.parametrize("same_key", [False, True], ids=["distinct-keys", "one-key"])
def test_fifty_concurrent_advances_make_exactly_one_transition(
    api: Api, same_key: bool, force: bool
) -> None:
    plan_id = make_plan(api.engine, mode="record_only")
    barrier = threading.Barrier(50)
    body = {"force": True, "reason": "incident 12"} if force else {}

    def advance(i: int) -> httpx.Response:
        key = "the-one-key" if same_key else f"key-{i}"
        with httpx.Client(base_url=api.url, timeout=60) as http:
            barrier.wait()
            return http.post(
                f"/v1/plans/{plan_id}/advance",
                json=body,
                headers=api.headers(
                    "admin" if force else "ramp", **{"Idempotency-Key": key, "If-Match": '"1"'}
                ),
            )

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(advance, range(50)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(500) == 0 and statuses.count(502) == 0
    fresh = [
        r for r in responses if r.status_code == 200 and "Idempotent-Replayed" not in r.headers
    ]
    assert len(fresh) == 1, statuses
    assert all(
        r.status_code == 409 or r.headers.get("Idempotent-Replayed") == "true"
        for r in responses
        if r is not fresh[0]
    ), statuses
    plan = load_plan(api.engine, plan_id)
    assert plan is not None and plan.current_stage == 0
    events = load_plan_events(api.engine, plan_id)
    applied = [e for e in events if e.action == "apply" and e.outcome == "ok"]
    assert len(applied) == 1
    # Every refusal of the plan (a lost race) is audited once; duplicates of one request
    # under one key (in progress, or replayed) are not new events.
    refusals = [
        r
        for r in responses
        if r.status_code == 409
        and "Idempotent-Replayed" not in r.headers
        and r.json()["title"] != "Request in progress"
    ]
    refused = [e for e in events if e.outcome == "refused"]
    assert len(refused) == len(refusals), (len(refused), len(refusals))
    assert len(refusals) == (0 if same_key else 49)


def test_ramp_and_cohort_lookups_are_consistent(api: Api) -> None:
    plan_id = make_plan(api.engine, mode="record_only", n=1200)
    version = 1
    for _ in range(2):
        version = api.post(f"/v1/plans/{plan_id}/advance", version=version).json()["version"]
    document = api.get(f"/v1/plans/{plan_id}/document").json()
    ramp = api.get(f"/v1/plans/{plan_id}/ramp").json()
    # Each cohort's users are served as the ramp says: its share of them rolled back.
    assert ramp["serving"]["rollback"]
    for cohort, share in ramp["serving"]["rollback"].items():
        members = load_plan_members(api.engine, plan_id, cohort)[:200]
        served = [api.get(f"/v1/users/{u}/cohort").json() for u in members]
        assert {s["cohort"] for s in served} == {cohort}
        rolled = sum(s["rolled_back"] for s in served) / len(served)
        assert abs(rolled - share) < 0.15, (cohort, share, rolled)
    assert ramp["current_stage"] == 1 and ramp["stages"] == len(document["stages"])
    problem(api.get("/v1/users/nobody/cohort"), 404)
    problem(api.get("/v1/plans/999999"), 404)
    problem(api.get("/v1/plans/0"), 422)
    assert datetime.fromisoformat(ramp["next_advance_at"]) > datetime.now(UTC) + timedelta(hours=1)


def test_the_weekly_report_endpoint_serves_what_the_cli_writes(api: Api, tmp_path: Path) -> None:
    from rollout.report import IsoWeek, build_weekly_report, render_markdown

    load_demo(api.engine, tmp_path, DemoConfig(n_users=300, seed=13))
    assert api.post("/v1/experiments/chat-model-upgrade/analysis").status_code == 201
    query = {"experiment": "chat-model-upgrade", "week": "2026-W44"}
    markdown = api.get("/v1/reports/weekly", **query, format="md")
    assert markdown.status_code == 200 and markdown.headers["content-type"].startswith("text/")
    expected = render_markdown(build_weekly_report(api.engine, "chat-model-upgrade", "2026-W44"))
    assert markdown.text == expected
    html = api.get("/v1/reports/weekly", **query)
    assert html.status_code == 200 and "<svg" in html.text
    assert "chat-model-upgrade-2026-W44.html" in html.headers["content-disposition"]
    bad = problem(api.get("/v1/reports/weekly", experiment="chat-model-upgrade", week="44"), 422)
    assert bad["errors"][0]["field"] == "query.week"
    problem(api.get("/v1/reports/weekly", **query, format="doc"), 422)
    problem(api.get("/v1/reports/weekly", experiment="nope", week="2026-W44"), 404)
    # As the CLI: without a week, the last complete week with data; a week that has not
    # ended is refused, its report would change as data arrives.
    latest = api.get("/v1/reports/weekly", experiment="chat-model-upgrade", format="md")
    default = build_weekly_report(api.engine, "chat-model-upgrade")
    assert latest.status_code == 200 and latest.text == render_markdown(default)
    current = IsoWeek.containing(datetime.now(UTC)).label
    early = api.get("/v1/reports/weekly", experiment="chat-model-upgrade", week=current)
    assert "has not ended yet" in problem(early, 422)["errors"][0]["message"]


def test_ready_checks_growthbook_when_it_is_configured(
    engine: sa.Engine, fake_growthbook: FakeGrowthBook, request: pytest.FixtureRequest
) -> None:
    fake_growthbook.add_feature(FEATURE)

    def client() -> GrowthBookClient:
        return GrowthBookClient(
            fake_growthbook.url, API_KEY, sleep=lambda _: None, max_attempts=1, timeout=2.0
        )

    api = Api(create_app(engine=engine, settings=SETTINGS, client_factory=client), engine)
    request.addfinalizer(api.close)
    assert api.get("/v1/ready").json()["checks"] == {"database": "ok", "growthbook": "ok"}
    fake_growthbook.inject(Fault(status=503, times=10))
    down = problem(api.get("/v1/ready"), 503)
    assert down["checks"]["growthbook"].startswith("unreachable")
