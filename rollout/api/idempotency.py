"""``Idempotency-Key``: the same key from the same token gets the same answer, once.

The key is reserved before the work starts (a row with no status yet), so two concurrent
requests with one key never both do the work: the second is told the first is in progress,
and a retry after it finished replays the stored answer. Server errors are not stored, so a
retry after one tries again. A reservation holds for ``LEASE`` only: one left in progress by a
server killed during the work is taken over by the next retry of the same request after it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.responses import JSONResponse

from rollout.api.problems import PROBLEM_JSON, ProblemError
from rollout.models import IdempotencyRecord
from rollout.store import (
    complete_idempotency_key,
    forget_idempotency_key,
    reserve_idempotency_key,
)
from rollout.tokens import Principal

IN_PROGRESS = 0
# How long a reservation in progress holds the key. Work under a key takes seconds (a stage
# written to GrowthBook, retries included); one older than this was left by a dead server.
LEASE = timedelta(minutes=5)


def request_hash(method: str, path: str, body: Any) -> str:
    # The standard library, not orjson: request bodies may carry integers beyond 64 bits.
    text = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _replay(record: IdempotencyRecord, method: str, path: str, digest: str) -> JSONResponse:
    if record.request_hash != digest:
        raise ProblemError(
            422,
            "Idempotency key reused",
            f"Idempotency-Key {record.key!r} was used for a different request "
            f"({record.method} {record.path}); use a new key for a new request.",
        )
    if record.status_code == IN_PROGRESS:
        raise ProblemError(
            409,
            "Request in progress",
            f"a request with Idempotency-Key {record.key!r} is still being processed; "
            f"retry shortly to get its answer (after {LEASE.seconds // 60} minutes without "
            "one, a retry runs the request again)",
        )
    media = PROBLEM_JSON if record.status_code >= 400 else "application/json"
    return JSONResponse(
        record.response,
        status_code=record.status_code,
        media_type=media,
        headers={"Idempotent-Replayed": "true"},
    )


def _reserve(
    engine: sa.Engine,
    principal: Principal,
    key: str,
    method: str,
    path: str,
    digest: str,
    status_code: int,
    response: dict[str, Any],
) -> IdempotencyRecord | None:
    """Store the key's record (in progress, or already answered); return the record that
    held the key instead, or None when this one was stored (a lapsed lease is taken over)."""
    now = datetime.now(UTC)
    record = IdempotencyRecord(
        token_id=principal.token_id,
        key=key,
        method=method,
        path=path,
        request_hash=digest,
        status_code=status_code,
        response=response,
        created_at=now,
    )
    return reserve_idempotency_key(
        engine, record, in_progress=IN_PROGRESS, lease_expired_before=now - LEASE
    )


def run_idempotent(
    engine: sa.Engine,
    principal: Principal,
    key: str,
    method: str,
    path: str,
    body: Any,
    work: Callable[[], tuple[int, dict[str, Any]]],
) -> JSONResponse:
    """Do ``work`` once per (token, key); store and return its (status, body)."""
    digest = request_hash(method, path, body)
    existing = _reserve(engine, principal, key, method, path, digest, IN_PROGRESS, {})
    if existing is not None:
        return _replay(existing, method, path, digest)
    try:
        status, payload = work()
    except ProblemError as problem:
        status, payload = problem.status, problem.body(path)
    except BaseException:
        forget_idempotency_key(engine, principal.token_id, key)
        raise
    if status >= 500:
        forget_idempotency_key(engine, principal.token_id, key)
    else:
        complete_idempotency_key(engine, principal.token_id, key, status, payload)
    media = PROBLEM_JSON if status >= 400 else "application/json"
    return JSONResponse(payload, status_code=status, media_type=media)


def refuse_once(
    engine: sa.Engine,
    principal: Principal,
    key: str | None,
    method: str,
    path: str,
    problem: ProblemError,
    audit: Callable[[], None],
) -> None:
    """Store a refusal made before the work (a token without the scope) as the answer under
    ``key`` and ``audit`` it the first time only: a retry with the same key is a replay of the
    same refusal, not a new event. Without a usable key every attempt is audited."""
    if key is None:
        audit()
        return
    digest = request_hash(method, path, "refused")
    existing = _reserve(
        engine, principal, key, method, path, digest, problem.status, problem.body(path)
    )
    if existing is None or existing.request_hash != digest:
        audit()
