"""What every route needs: the engine, the caller and their scope, the GrowthBook client,
and the in-process caches that keep ``/ramp`` fast."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rollout.api import limits
from rollout.api.idempotency import refuse_once
from rollout.api.problems import ProblemError
from rollout.documents import PlanDocument
from rollout.tokens import Principal, authenticate

DECISION_TTL_SECONDS = 30.0  # how long a computed guardrail decision is served from memory
# How long a token check and a plan's state are served from memory by each worker: a revoked
# token stops working, and a change made through another worker shows, within these.
TOKEN_TTL_SECONDS = 5.0
STATE_TTL_SECONDS = 1.0


@dataclass
class ApiState:
    """Per application: the engine, how to reach GrowthBook, and caches."""

    engine: sa.Engine
    client_factory: Callable[[], Any | None]  # a context manager giving a RuleWriter, or None
    environments: list[str]
    # The settings GrowthBook writes lack (named in the refusal of a live plan's advance).
    growthbook_missing: list[str] = field(default_factory=list)
    # plan id -> (the plan version it was read at, plan.json)
    documents: dict[int, tuple[int, PlanDocument]] = field(default_factory=dict)
    labels: dict[int, dict[str, str]] = field(default_factory=dict)  # run id -> user -> label
    decisions: dict[int, tuple[float, int, dict[str, Any] | None]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    principals: dict[str, tuple[float, Principal | None]] = field(default_factory=dict)
    states: dict[int, tuple[float, Any]] = field(default_factory=dict)
    # plan id -> (version, its forced advances as the ramp shows them)
    forced: dict[int, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)
    refreshing: set[int] = field(default_factory=set)

    def principal(self, token: str) -> Principal | None:
        """The caller of a token, checked against the database at most every few seconds."""
        entry = self.principals.get(token)
        if entry is not None and time.monotonic() - entry[0] < TOKEN_TTL_SECONDS:
            return entry[1]
        principal = authenticate(self.engine, token)
        if len(self.principals) > 10_000:  # bounded: garbage tokens must not grow it forever
            self.principals.clear()
        self.principals[token] = (time.monotonic(), principal)
        return principal

    def claim(self, plan_id: int) -> bool:
        """Become the one refresher of a plan's remembered state (False: someone is)."""
        with self.lock:
            if plan_id in self.refreshing:
                return False
            self.refreshing.add(plan_id)
            return True

    def release(self, plan_id: int) -> None:
        with self.lock:
            self.refreshing.discard(plan_id)

    def forget(self, plan_id: int) -> None:
        """Drop what this worker remembers of a plan's state (after changing it)."""
        self.states.pop(plan_id, None)
        self.decisions.pop(plan_id, None)
        self.forced.pop(plan_id, None)

    def cached_decision(self, plan_id: int, version: int) -> dict[str, Any] | bool | None:
        """The decision computed for this plan version within the TTL; False if none."""
        entry = self.decisions.get(plan_id)
        if entry and entry[1] == version and time.monotonic() - entry[0] < DECISION_TTL_SECONDS:
            return entry[2]
        return False


async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.aftershock
    return state


StateDep = Annotated[ApiState, Depends(get_state)]
_bearer = HTTPBearer(auto_error=False, description="An Aftershock API token (aftershock tokens)")


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting callers whose token grants ``scope`` (or a wider one)."""

    async def check(
        request: Request,
        state: StateDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        unauthorised = limits.unauthorised()
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise unauthorised
        principal = state.principal(credentials.credentials)
        if principal is None:
            raise unauthorised
        if not principal.allows(scope):
            forbidden = ProblemError(
                403,
                "Forbidden",
                f"this token ({principal.name}) has scopes {sorted(principal.scopes)}; "
                f"this needs {scope!r}",
            )
            if request.method in limits.BODY_METHODS:
                await run_in_threadpool(_audit_forbidden, state, principal, request, forbidden)
            raise forbidden
        return principal

    return check


def _audit_forbidden(
    state: ApiState, principal: Principal, request: Request, forbidden: ProblemError
) -> None:
    """Audit a change of a plan refused for want of scope, once per Idempotency-Key."""
    from rollout.ramp import refuse
    from rollout.store import load_plan_state

    raw_id = str(request.path_params.get("plan_id", ""))
    if not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 9):
        return  # not a plan's route, or not a plan id (the route answers that)
    plan = load_plan_state(state.engine, int(raw_id))
    if plan is None:
        return
    key = request.headers.get("Idempotency-Key")
    action = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    refuse_once(
        state.engine,
        principal,
        key if key is not None and _KEY.match(key) else None,
        request.method,
        request.url.path,
        forbidden,
        lambda: refuse(state.engine, plan, action, principal.name, forbidden.detail),
    )


Reader = Annotated[Principal, Depends(require("read"))]
Ramper = Annotated[Principal, Depends(require("ramp"))]

_KEY = re.compile(r"^[A-Za-z0-9._:\-]{1,255}$")


def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Unique per mutation (e.g. a UUID); a retry with the same key gets the "
            "same answer and changes nothing again.",
        ),
    ] = None,
) -> str:
    if key is None:
        raise ProblemError(
            400, "Idempotency key required", "mutations need an Idempotency-Key header"
        )
    if not _KEY.match(key):
        raise ProblemError(
            400,
            "Invalid idempotency key",
            "Idempotency-Key must be 1-255 characters of letters, digits and . _ : -",
        )
    return key


IdempotencyKey = Annotated[str, Depends(idempotency_key)]


def plan_version(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='The plan version you read (its ETag, e.g. "3"); the change happens '
            "only if the plan is still at it.",
        ),
    ] = None,
) -> int:
    if if_match is None:
        raise ProblemError(428, "Precondition required", 'send If-Match: "<version>" (the ETag)')
    return parse_version(if_match)


# A plan version as an entity tag: ASCII digits only (``str.isdigit`` also admits "²" and
# other Unicode digits, which ``int`` refuses), quoted or bare, at most 9 of them.
_VERSION = re.compile(r'"?([0-9]{1,9})"?', re.ASCII)


def parse_version(if_match: str) -> int:
    """The plan version an ``If-Match`` header names: ``"3"`` (or ``3``). Weak tags
    (``W/"3"``), lists and ``*`` are refused: a plan change needs the strong comparison."""
    text = if_match.strip()
    if text.startswith(("W/", "w/")):
        raise ProblemError(
            400,
            "Invalid If-Match",
            f"weak entity tags are not accepted ({if_match!r}): send the ETag as it was "
            'given, e.g. If-Match: "3"',
        )
    found = _VERSION.fullmatch(text)
    if found is None or text.count('"') == 1:
        raise ProblemError(
            400,
            "Invalid If-Match",
            f'If-Match must be one plan version like "3" (ASCII digits, at most 9), '
            f"got {if_match!r}",
        )
    return int(found.group(1))


Version = Annotated[int, Depends(plan_version)]


__all__ = ["ApiState", "IdempotencyKey", "Ramper", "Reader", "StateDep", "Version"]
