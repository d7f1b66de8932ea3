"""``Idempotency-Key``: the same key from the same token gets the same answer, once.

The key is reserved before the work starts (a row with no status yet), so two concurrent
requests with one key never both do the work: the second is told the first is in progress,
and a retry after it finished replays the stored answer. Server errors are not stored, so a
retry after one tries again. A reservation holds for ``LEASE`` and is renewed while the work
runs (:class:`Lease`), so a slow request keeps its key however long it takes; one left in
progress by a server killed during the work stops being renewed and is taken over by the next
retry of the same request after ``LEASE``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from fastapi.responses import JSONResponse

from rollout.api.problems import PROBLEM_JSON, ProblemError
from rollout.models import IdempotencyRecord
from rollout.store import (
    complete_idempotency_key,
    forget_idempotency_key,
    renew_idempotency_key,
    reserve_idempotency_key,
)
from rollout.tokens import Principal

log = logging.getLogger(__name__)

IN_PROGRESS = 0
# How long a reservation in progress holds the key without being renewed. A live request
# renews it every RENEWALS_PER_LEASE-th of that, so only a dead server's reservation lapses.
LEASE = timedelta(minutes=5)
RENEWALS_PER_LEASE = 5


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
    now: datetime,
) -> IdempotencyRecord | None:
    """Store the key's record (in progress, or already answered) as of ``now``; return the
    record that held the key instead, or None when this one was stored (a lapsed lease is
    taken over)."""
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


class Lease:
    """Renews a reservation in progress from a background thread while the work under it runs
    (``with Lease(...): work()``), every ``LEASE / RENEWALS_PER_LEASE``."""

    def __init__(self, engine: sa.Engine, token_id: int, key: str, held_since: datetime) -> None:
        self._engine, self._token_id, self._key = engine, token_id, key
        self._held_since = held_since
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="idempotency-lease", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()

    def _renew(self) -> None:
        while not self._done.wait((LEASE / RENEWALS_PER_LEASE).total_seconds()):
            now = datetime.now(UTC)
            try:
                renewed = renew_idempotency_key(
                    self._engine,
                    self._token_id,
                    self._key,
                    in_progress=IN_PROGRESS,
                    held_since=self._held_since,
                    now=now,
                )
            except sa.exc.SQLAlchemyError:  # the database is away: try again at the next tick
                log.warning("could not renew Idempotency-Key %r; retrying", self._key)
                continue
            if not renewed:
                log.warning("Idempotency-Key %r was taken over while its work ran", self._key)
                return
            self._held_since = now


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
    now = datetime.now(UTC)
    existing = _reserve(engine, principal, key, method, path, digest, IN_PROGRESS, {}, now)
    if existing is not None:
        return _replay(existing, method, path, digest)
    try:
        with Lease(engine, principal.token_id, key, now):
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
        engine,
        principal,
        key,
        method,
        path,
        digest,
        problem.status,
        problem.body(path),
        datetime.now(UTC),
    )
    if existing is None or existing.request_hash != digest:
        audit()
