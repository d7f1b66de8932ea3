"""The flag-ramp API under hostile and careless input (issue 12): malformed versions, bodies
too large or sent without a token, idempotency keys left in progress by a killed server, and
an audit trail that records every refusal once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from analytics.settings import Settings
from rollout.api.app import create_app
from rollout.api.idempotency import IN_PROGRESS, LEASE, request_hash, run_idempotent
from rollout.api.limits import RequestLimits
from rollout.api.problems import ProblemError
from rollout.api.schemas import TransitionRequest
from rollout.models import IdempotencyRecord
from rollout.ramp import refuse
from rollout.store import (
    list_tokens,
    load_plan,
    load_plan_events,
    renew_idempotency_key,
    reserve_idempotency_key,
)
from rollout.tokens import Principal, create_token
from tests.apps import SETTINGS, Api, asgi_request
from tests.factories import stored_plan
from tests.test_api import problem

MIB = 1 << 20


@pytest.fixture
def api(engine: sa.Engine) -> Iterator[Api]:
    served = Api(create_app(engine=engine, settings=SETTINGS), engine)
    yield served
    served.close()


# ------------------------------------------------------------------ If-Match


@pytest.mark.parametrize(
    "if_match",
    ['"\xb2"', "\xb2", '"\u0663"', '"1234567890"', '"1", "2"', "*", '"1', '""', "one"],
    ids=[
        "superscript-two",
        "bare-superscript",
        "arabic-digit",
        "too-long",
        "list",
        "star",
        "unclosed",
        "empty",
        "word",
    ],
)
def test_a_malformed_if_match_is_a_400_problem_not_a_server_error(api: Api, if_match: str) -> None:
    plan_id = stored_plan(api.engine)
    # Bytes as a client puts them on the wire (Latin-1 where it can, else UTF-8).
    raw: dict[str, str | bytes] = {**api.headers("ramp", **{"Idempotency-Key": "k"})}
    try:
        raw["If-Match"] = if_match.encode("latin-1")
    except UnicodeEncodeError:
        raw["If-Match"] = if_match.encode("utf-8")
    response = api.http.post(f"/v1/plans/{plan_id}/pause", json={}, headers=raw)
    assert "If-Match" in problem(response, 400)["title"]
    plan = load_plan(api.engine, plan_id)
    assert plan is not None and plan.version == 1


def test_a_weak_if_match_is_refused_with_a_clear_problem(api: Api) -> None:
    plan_id = stored_plan(api.engine)
    headers = api.headers("ramp", **{"Idempotency-Key": "k", "If-Match": 'W/"1"'})
    body = problem(api.http.post(f"/v1/plans/{plan_id}/pause", json={}, headers=headers), 400)
    assert "weak" in body["detail"]
    # The strong tag, as the ETag gives it, works.
    etag = api.get(f"/v1/plans/{plan_id}").headers["ETag"]
    headers = api.headers("ramp", **{"Idempotency-Key": "k2", "If-Match": etag})
    assert api.http.post(f"/v1/plans/{plan_id}/pause", json={}, headers=headers).is_success


# ------------------------------------------------------------------ bodies


class CountingBody:
    """A streamed request body (no Content-Length) that counts what the client sent."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total = total
        self.chunk = chunk
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < self.total:
            self.sent += self.chunk
            yield b"x" * self.chunk


def _post_streamed(api: Api, body: CountingBody, headers: dict[str, str]) -> int | None:
    """The status the server answered with, or None when it closed the connection first
    (having stopped reading: the client could not send the rest)."""
    try:
        with httpx.Client(base_url=api.url, timeout=30) as http:
            return http.post("/v1/features/f/plans", content=body, headers=headers).status_code
    except httpx.TransportError:
        return None


@pytest.mark.parametrize("token", [False, True], ids=["no-token", "token"])
def test_a_huge_streamed_body_is_not_read_whole(api: Api, token: bool) -> None:
    body = CountingBody(300 * MIB)
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k"}
    if token:
        headers |= api.headers("ramp")
    status = _post_streamed(api, body, headers)
    assert status in (None, 413 if token else 401)
    # The server stopped reading early: what the client got out is what the socket buffers
    # held, far from the 300 MB.
    assert body.sent < 64 * MIB, body.sent


def test_a_declared_content_length_over_the_limit_is_413_before_reading(api: Api) -> None:
    headers = api.headers("ramp", **{"Idempotency-Key": "k", "Content-Type": "application/json"})
    response = api.http.post(
        "/v1/features/f/plans", content=b"{" + b" " * (2 * MIB) + b"}", headers=headers
    )
    assert problem(response, 413)["max_body_bytes"] == SETTINGS.api_max_body_bytes


def test_a_mutation_without_a_token_is_401_without_reading_its_body(api: Api) -> None:
    response = api.http.post(
        "/v1/features/f/plans",
        content=b"{}",
        headers={"Content-Type": "application/json", "Idempotency-Key": "k"},
    )
    problem(response, 401)
    bad = api.http.post(
        "/v1/features/f/plans",
        content=b"{}",
        headers={"Authorization": "Bearer ash_nope", "Idempotency-Key": "k"},
    )
    problem(bad, 401)


def _call(app: Any, method: str, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, int]:
    """(status, how many body chunks the app pulled) of a request to create a plan."""
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    answer = asgi_request(app, method, "/v1/features/f/plans", raw, chunks)
    return answer.status, answer.pulled


def test_the_body_limit_middleware_stops_pulling_at_the_limit(engine: sa.Engine) -> None:
    app = create_app(engine=engine, settings=Settings(_env_file=None, api_max_body_bytes=4096))
    secret = create_token(engine, "ramp-bot", ["ramp"])[1]
    chunks = [b"x" * 1024] * 1000  # 1 MB in 1 KiB chunks
    auth = {"authorization": f"Bearer {secret}", "idempotency-key": "k"}
    status, pulled = _call(app, "POST", auth, chunks)
    assert (status, pulled) == (413, 5)  # the fifth KiB passes 4096 bytes
    status, pulled = _call(app, "POST", {"idempotency-key": "k"}, chunks)
    assert (status, pulled) == (401, 0)  # no token: not one chunk read
    status, pulled = _call(app, "POST", auth | {"content-length": str(len(chunks) * 1024)}, chunks)
    assert (status, pulled) == (413, 0)  # declared too large: not one chunk read
    # Under the limit the request goes through to validation (and on to the routes).
    status, _ = _call(app, "POST", auth, [b"{", b"}"])
    assert status == 422


def test_the_body_limit_is_a_setting_with_a_sane_default() -> None:
    assert Settings(_env_file=None).api_max_body_bytes == MIB
    assert RequestLimits(lambda *_: None, max_body_bytes=10).max_body_bytes == 10  # type: ignore[arg-type]


# ------------------------------------------------------------------ idempotency leases


def _left_in_progress(api: Api, path: str, key: str, age: timedelta) -> None:
    """The reservation a server killed during the work of ``POST path {}`` leaves behind."""
    [token] = [t for t in list_tokens(api.engine) if t.name == "ramp-bot"]
    at = datetime.now(UTC) - age
    reserved = IdempotencyRecord(
        token_id=token.id or 0,
        key=key,
        method="POST",
        path=path,
        request_hash=request_hash("POST", path, TransitionRequest().model_dump(mode="json")),
        status_code=IN_PROGRESS,
        response={},
        created_at=at,
    )
    assert (
        reserve_idempotency_key(
            api.engine, reserved, in_progress=IN_PROGRESS, lease_expired_before=at
        )
        is None
    )


def test_a_key_left_in_progress_by_a_killed_server_runs_again_after_its_lease(api: Api) -> None:
    plan_id = stored_plan(api.engine)
    path = f"/v1/plans/{plan_id}/pause"
    _left_in_progress(api, path, "stuck", LEASE + timedelta(seconds=5))
    retried = api.post(path, key="stuck", version=1)
    assert retried.status_code == 200, retried.text
    assert "Idempotent-Replayed" not in retried.headers and retried.json()["status"] == "paused"
    # Now done: the next retry replays the answer and changes nothing again.
    again = api.post(path, key="stuck", version=1)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == retried.json()
    plan = load_plan(api.engine, plan_id)
    assert plan is not None and plan.version == 2


def test_a_key_in_progress_within_its_lease_is_still_409(api: Api) -> None:
    plan_id = stored_plan(api.engine)
    path = f"/v1/plans/{plan_id}/pause"
    _left_in_progress(api, path, "busy", timedelta(seconds=10))
    body = problem(api.post(path, key="busy", version=1), 409)
    assert "in progress" in body["title"].lower()
    # A different request under the expired key is still a reused key, not a takeover.
    _left_in_progress(api, path, "old", LEASE * 2)
    reused = api.post(path, {"reason": "other"}, key="old", version=1)
    problem(reused, 422)


def test_a_slow_request_keeps_its_key_past_the_lease(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rollout.api.idempotency as idempotency

    monkeypatch.setattr(idempotency, "LEASE", timedelta(seconds=0.4))  # renewed every 0.08 s
    [token] = [t for t in list_tokens(api.engine) if t.name == "ramp-bot"]
    caller = Principal(token.id or 0, token.name, frozenset({"ramp"}))
    runs: list[int] = []
    started = threading.Event()

    def slow() -> tuple[int, dict[str, Any]]:
        runs.append(1)
        started.set()
        time.sleep(1.2)  # three leases
        return 200, {"done": True}

    def call() -> int:
        answer = run_idempotent(api.engine, caller, "slow", "POST", "/v1/x", {}, slow)
        return answer.status_code

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(call)
        started.wait(5)
        time.sleep(0.8)  # two leases in: a retry must still see it in progress
        with pytest.raises(ProblemError) as retry:
            call()
        assert retry.value.status == 409
        assert first.result() == 200
    assert len(runs) == 1
    replay = run_idempotent(api.engine, caller, "slow", "POST", "/v1/x", {}, slow)
    assert (replay.headers["Idempotent-Replayed"], len(runs)) == ("true", 1)


def test_a_lease_taken_over_is_not_renewed_by_its_old_holder(api: Api) -> None:
    [token] = [t for t in list_tokens(api.engine) if t.name == "ramp-bot"]

    def reserve(at: datetime) -> IdempotencyRecord | None:
        record = IdempotencyRecord(
            token_id=token.id or 0,
            key="k",
            method="POST",
            path="/v1/y",
            request_hash=request_hash("POST", "/v1/y", {}),
            status_code=IN_PROGRESS,
            response={},
            created_at=at,
        )
        return reserve_idempotency_key(
            api.engine, record, in_progress=IN_PROGRESS, lease_expired_before=at - LEASE
        )

    old = datetime.now(UTC) - LEASE * 2
    taken_at = datetime.now(UTC)
    assert reserve(old) is None  # a server died holding it
    assert reserve(taken_at) is None  # a retry took it over after the lease
    renew = partial(renew_idempotency_key, api.engine, token.id or 0, "k", in_progress=IN_PROGRESS)
    assert not renew(held_since=old, now=datetime.now(UTC))  # the dead holder lost it
    assert renew(held_since=taken_at, now=datetime.now(UTC))


# ------------------------------------------------------------------ the audit trail


def _refusals(api: Api, plan_id: int) -> list[dict[str, Any]]:
    events = api.get("/v1/audit", plan_id=plan_id).json()["data"]
    return [e for e in events if e["outcome"] == "refused"]


def test_a_read_tokens_403_is_audited_once_per_key(api: Api) -> None:
    plan_id = stored_plan(api.engine)
    for _ in range(3):
        problem(api.post(f"/v1/plans/{plan_id}/pause", scope="read", key="r1", version=1), 403)
    problem(api.post(f"/v1/plans/{plan_id}/abort", scope="read", key="r2", version=1), 403)
    refused = _refusals(api, plan_id)
    assert [(e["action"], e["actor"]) for e in refused] == [
        ("abort", "read-bot"),
        ("pause", "read-bot"),
    ]
    assert "'ramp'" in refused[0]["details"]["reason"]


@pytest.mark.parametrize("scope", ["ramp", "admin"])
def test_retrying_a_forced_advance_with_its_key_adds_no_audit_rows(api: Api, scope: str) -> None:
    plan_id = stored_plan(api.engine)
    body = {"force": True, "reason": "incident 12", "dry_run": True}
    first = api.post(f"/v1/plans/{plan_id}/advance", body, scope=scope, key="f1", version=1)
    before = load_plan_events(api.engine, plan_id)
    for _ in range(3):
        again = api.post(f"/v1/plans/{plan_id}/advance", body, scope=scope, key="f1", version=1)
        assert again.status_code == first.status_code == (200 if scope == "admin" else 403)
        assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert len(load_plan_events(api.engine, plan_id)) == len(before)
    if scope == "ramp":
        [refused] = _refusals(api, plan_id)
        assert "admin" in refused["details"]["reason"]


def test_refusals_outside_the_race_are_audited(api: Api) -> None:
    plan_id = stored_plan(api.engine)
    # A forced advance without a reason: refused (422), audited once, replayed on a retry.
    for _ in range(2):
        no_reason = api.post(
            f"/v1/plans/{plan_id}/advance", {"force": True}, scope="admin", key="n", version=1
        )
        problem(no_reason, 422)
    # A stale version.
    problem(api.post(f"/v1/plans/{plan_id}/pause", version=7), 409)
    assert [e["action"] for e in _refusals(api, plan_id)] == ["pause", "advance"]


def test_the_audit_pages_past_a_thousand_events(api: Api) -> None:
    plan_id = stored_plan(api.engine)
    plan = load_plan(api.engine, plan_id)
    assert plan is not None
    for i in range(1_203):
        refuse(api.engine, plan, "advance", "bot", f"refusal {i}")
    seen: list[int] = []
    offset: int | None = 0
    while offset is not None:
        page = api.get("/v1/audit", plan_id=plan_id, limit=1000, offset=offset).json()
        seen += [e["id"] for e in page["data"]]
        offset = page["next_offset"]
    assert len(seen) == len(set(seen)) == 1_203 and seen == sorted(seen, reverse=True)
    # The cursor: events older than the last one seen.
    first = api.get("/v1/audit", plan_id=plan_id, limit=1000).json()
    rest = api.get(
        "/v1/audit", plan_id=plan_id, limit=1000, before_id=first["data"][-1]["id"]
    ).json()
    assert [e["id"] for e in first["data"] + rest["data"]] == seen
    assert rest["next_offset"] is None
