"""Random HTTP requests, beyond schemathesis' schema-shaped ones: any method, path, query,
header bytes (tokens valid and broken, encodings, lengths, versions), body sizes across the
limit and body bytes. Every answer is a 4xx or 2xx (never a 5xx, never no answer), every
error is a problem document with one clear detail, and the plan is still served after each.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.settings import Settings
from rollout.api.app import create_app
from rollout.tokens import create_token
from tests.apps import asgi_request
from tests.factories import stored_plan

LIMIT = 4096  # the body limit these requests are sent against


class World:
    """An app over a database holding a plan, with a token per scope."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.app = create_app(
            engine=engine, settings=Settings(_env_file=None, api_max_body_bytes=LIMIT)
        )
        self.plan_id = stored_plan(engine)
        self.tokens = {s: create_token(engine, f"fuzz-{s}", [s])[1] for s in ("read", "admin")}


ROUTES = [
    "/v1/health",
    "/v1/ready",
    "/v1/experiments",
    "/v1/experiments/{text}/analysis",
    "/v1/features/{text}/plans",
    "/v1/plans/{id}",
    "/v1/plans/{id}/document",
    "/v1/plans/{id}/ramp",
    "/v1/plans/{id}/advance",
    "/v1/plans/{id}/pause",
    "/v1/plans/{id}/resume",
    "/v1/plans/{id}/abort",
    "/v1/plans/{id}/replan",
    "/v1/plans/{id}/evaluate",
    "/v1/users/{text}/cohort",
    "/v1/audit",
    "/docs",
    "/docs/assets/{text}",
    "/redoc",
    "/openapi.json",
]
ids = st.one_of(
    st.just("PLAN"),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=30),
)
texts = st.one_of(
    st.sampled_from(["chat-model-upgrade", "chat-model", "u000001"]),
    st.text(max_size=80),
    st.text(alphabet="%/.\\\x00\u202e\ud7ff", max_size=20),
)


@st.composite
def paths(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return "/" + draw(st.text(max_size=60))
    template = draw(st.sampled_from(ROUTES))
    return template.replace("{id}", draw(ids)).replace("{text}", draw(texts))


header_values = st.one_of(
    st.binary(max_size=120),
    st.sampled_from([b"", b"\xb2", b'"1"', b'W/"1"', b"*", b"application/json", b"gzip"]),
    st.binary(min_size=8_000, max_size=9_000),  # a header no server would pass on
)
HEADER_NAMES = [
    b"content-type",
    b"content-length",
    b"content-encoding",
    b"transfer-encoding",
    b"if-match",
    b"idempotency-key",
    b"accept",
    b"accept-encoding",
    b"x-forwarded-for",
]


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    headers: list[tuple[bytes, bytes]] = []
    auth = draw(st.sampled_from(["read", "admin", "garbage", "none", "bytes"]))
    if auth in ("read", "admin"):
        headers.append((b"authorization", b"Bearer " + auth.encode()))  # replaced below
    elif auth == "garbage":
        headers.append((b"authorization", b"Bearer " + draw(st.binary(max_size=80))))
    elif auth == "bytes":
        headers.append((b"authorization", draw(st.binary(max_size=80))))
    for name in draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=5)):
        headers.append((name, draw(header_values)))
    size = draw(st.sampled_from([0, 1, 100, LIMIT - 1, LIMIT, LIMIT + 1, 3 * LIMIT]))
    body = draw(
        st.one_of(
            st.binary(min_size=size, max_size=size),
            st.just(b"{" * size),
            st.just(json.dumps({"reason": "x" * size, "force": True}).encode()),
            st.just(b'{"rollback_value": "\xff\xfe", "current_value": 1e999}'),
        )
    )
    pieces = draw(st.integers(1, 4))
    step = max(1, len(body) // pieces)
    return {
        "method": draw(
            st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "BREW"])
        ),
        "path": draw(paths()),
        "query": draw(st.one_of(st.just(b""), st.binary(max_size=60), st.just(b"offset=-1"))),
        "headers": headers,
        "chunks": [body[i : i + step] for i in range(0, len(body), step)] or [b""],
    }


@pytest.fixture
def world(engine: sa.Engine) -> World:
    return World(engine)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
def test_random_requests_never_get_a_server_error(world: World, request: dict[str, Any]) -> None:
    headers = [
        (name, b"Bearer " + world.tokens[value[7:].decode()].encode())
        if name == b"authorization" and value in (b"Bearer read", b"Bearer admin")
        else (name, value)
        for name, value in request["headers"]
    ]
    path = request["path"].replace("PLAN", str(world.plan_id))
    answer = asgi_request(
        world.app, request["method"], path, headers, request["chunks"], request["query"]
    )
    assert 200 <= answer.status < 500, (answer.status, answer.body[:300])
    if answer.status >= 400 and request["method"] != "HEAD":
        problem = json.loads(answer.body)
        assert isinstance(problem.get("detail"), str | list) and problem["detail"]
    # Whatever it was, the plan is still there to read.
    token = b"Bearer " + world.tokens["read"].encode()
    check = asgi_request(
        world.app, "GET", f"/v1/plans/{world.plan_id}", [(b"authorization", token)], [b""]
    )
    assert check.status == 200, check.body[:300]
