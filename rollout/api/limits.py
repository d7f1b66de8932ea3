"""What a request may cost before anyone knows who sent it: the caller of a mutation is
checked before its body is read, and no body larger than the limit is read at all; a query
string that is not UTF-8 (which Starlette cannot parse into a URL) is a 400 here.

FastAPI reads a request's body before it resolves the route's dependencies, so without this
a caller with no token could make a worker hold a body of any size in memory before the 401.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rollout.api.problems import ProblemError

# Methods whose requests carry a body; the routes that take one all need a token.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = frozenset({"/v1/health"})


def unauthorised() -> ProblemError:
    return ProblemError(
        401,
        "Unauthorized",
        "send a valid API token: Authorization: Bearer ash_...",
        headers={"WWW-Authenticate": "Bearer"},
    )


def too_large(limit: int) -> ProblemError:
    return ProblemError(
        413,
        "Content too large",
        f"request bodies are limited to {limit} bytes (AFTERSHOCK_API_MAX_BODY_BYTES)",
        max_body_bytes=limit,
    )


def bad_query() -> ProblemError:
    return ProblemError(
        400, "Bad request", "the query string is not UTF-8: percent-encode its bytes"
    )


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class RequestLimits:
    """ASGI middleware: 413 for a declared ``Content-Length`` over ``max_body_bytes``; 401 for
    a mutation without a valid token, before its body is read; then the body is read (at most
    ``max_body_bytes``, counted as it streams, 413 beyond) and handed to the application."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _is_utf8(scope.get("query_string", b"")):
            await self._answer(bad_query(), scope, receive, send)
            return
        if scope["type"] != "http" or (
            scope["method"] not in BODY_METHODS and _header(scope, b"content-length") is None
        ):  # reads (GET /ramp is the hot path) carry no body: nothing to limit or hold
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        declared = (_header(scope, b"content-length") or "").strip()
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._answer(too_large(self.max_body_bytes), scope, receive, send)
            return
        needs_token = path.startswith("/v1/") and path not in OPEN_PATHS
        if scope["method"] in BODY_METHODS and needs_token and not await self._authenticated(scope):
            await self._answer(unauthorised(), scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._answer(too_large(self.max_body_bytes), scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    async def _authenticated(self, scope: Scope) -> bool:
        """Whether the request names a valid token (the scope is checked by the route)."""
        header = _header(scope, b"authorization")
        if header is None:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        app: Any = scope.get("app")
        state = getattr(getattr(app, "state", None), "aftershock", None)
        if state is None:  # not mounted in the Aftershock app: let the routes decide
            return True
        # The same remembered check the route's dependency makes next (a database read at
        # most every few seconds per token).
        return await run_in_threadpool(state.principal, token.strip()) is not None

    @staticmethod
    async def _answer(problem: ProblemError, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem.response(str(scope.get("path", "")))
        # The body is left unread: the server closes the connection after this answer.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
