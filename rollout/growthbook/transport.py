"""The HTTP layer under the GrowthBook client: requests, retries, rate limit, dry run, errors.

:class:`Transport` sends JSON requests to GrowthBook's REST API (``<base_url>/api``) with httpx
and knows nothing of features or rules:

* Reads and rejected requests (429, connection never made) are retried with exponential backoff
  and jitter, honouring ``Retry-After``. A write whose outcome is unknown (timeout or 5xx after
  it was sent) is never resent as is: it raises an internal error that only
  :meth:`Transport.rerun_on_uncertain_write` catches, to run a whole operation again from a
  fresh read.
* Requests are spaced to stay under GrowthBook's 60 requests per rolling minute.
* In a dry run reads are sent but writes are only echoed, exactly as they would have been sent.
* The API key is sent as ``Authorization: Bearer``; it never appears in output, errors or reprs
  (server messages quoting it are scrubbed).

Failures are :class:`GrowthBookError` (or :class:`GrowthBookConflict` for a 409 or a stale
base), each saying which request failed, why, and what to re-run.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import tenacity
from pydantic import SecretStr

from analytics.errors import AftershockError, ConfigError

__all__ = ["GrowthBookConflict", "GrowthBookError", "Transport"]

T = TypeVar("T")

PAGE_LIMIT = 100  # the largest page GrowthBook serves
MAX_RETRY_AFTER = 300.0  # seconds; a longer Retry-After is capped rather than obeyed
RECONCILE_ATTEMPTS = 3  # full read-plan-write passes after a write of unknown outcome


class GrowthBookError(AftershockError):
    """A GrowthBook request failed; says which request, why, and what to re-run."""

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        rerun: str = "Nothing was changed on GrowthBook; re-run the same command.",
    ) -> None:
        self.message = message
        self.method = method
        self.path = path
        self.status = status
        self.rerun = rerun
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.method and self.path:
            where = f"GrowthBook {self.method} {self.path}"
            where += f" -> HTTP {self.status}: " if self.status is not None else ": "
        return f"{where}{self.message}. {self.rerun}"

    def with_rerun(self, rerun: str) -> GrowthBookError:
        """The same error (public class, same fields) with another ``rerun`` hint."""
        cls = GrowthBookConflict if isinstance(self, GrowthBookConflict) else GrowthBookError
        clone = cls(
            self.message, method=self.method, path=self.path, status=self.status, rerun=rerun
        )
        clone.__cause__ = self.__cause__
        return clone


class GrowthBookConflict(GrowthBookError):  # noqa: N818 (the name callers know)
    """GrowthBook holds something Aftershock did not write: it refused to overwrite it."""


class _RetryableError(GrowthBookError):
    """Safe to resend as is: the request was refused (429) or it is a read."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class _UncertainWriteError(GrowthBookError):
    """A write was sent but its outcome is unknown (timeout, 5xx): re-read, never resend."""


@dataclass
class _RateLimiter:
    """At most ``per_minute`` requests in any rolling 60 s window (sleeps when needed)."""

    per_minute: int
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    sent: deque[float] = field(default_factory=deque)

    def acquire(self) -> None:
        """Wait until one more request fits in the window, then count it."""
        while len(self.sent) >= self.per_minute:
            elapsed = self.clock() - self.sent[0]
            if elapsed >= 60.0:
                self.sent.popleft()
            else:
                self.sleep(60.0 - elapsed)
        self.sent.append(self.clock())


def _parse_retry_after(value: str | None, now: Callable[[], datetime]) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now()).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return json.dumps(body)[:300]


def _gate_types(response: httpx.Response) -> list[str]:
    """The publishing gates named by a 422 answer (e.g. ``stale-base``)."""
    try:
        gates = response.json().get("gates") or []
    except (ValueError, AttributeError):
        return []
    return [str(g.get("type")) for g in gates if isinstance(g, dict)]


class Transport:
    """JSON requests to one GrowthBook API host: retries, rate limit, dry run, key kept secret.

    ``base_url`` is the API host (``https://api.growthbook.io``; a trailing ``/api`` is
    accepted). ``max_attempts`` bounds every request (first try included). With
    ``dry_run=True`` :meth:`write` sends nothing: ``echo`` receives each write exactly as it
    would have been sent (key masked). Otherwise ``echo`` receives one line per request.
    ``sleep`` and ``clock`` (monotonic seconds) are injectable for tests, ``http_transport``
    (an httpx transport) too. Not thread-safe.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr,
        *,
        timeout: float = 10.0,
        max_attempts: int = 6,
        requests_per_minute: int = 60,
        dry_run: bool = False,
        echo: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if requests_per_minute < 1:
            raise ValueError("requests_per_minute must be at least 1")
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not key:
            raise ConfigError("the GrowthBook API key is empty")
        root = base_url.rstrip("/")
        root = root.removesuffix("/api")
        self.base_url = root
        self._key = SecretStr(key)
        self.dry_run = dry_run
        self._echo = echo
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._limiter = _RateLimiter(requests_per_minute, clock, sleep)
        self._backoff = tenacity.wait_exponential_jitter(multiplier=0.5, max=30.0, jitter=0.5)
        self._placeholders = 0
        self._http = httpx.Client(
            base_url=root + "/api",
            timeout=httpx.Timeout(timeout),
            headers={"Accept": "application/json", "User-Agent": "aftershock-growthbook/1"},
            transport=http_transport,
        )

    def __repr__(self) -> str:
        return f"Transport({self.base_url!r}, api_key='***', dry_run={self.dry_run})"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def placeholder(self) -> str:
        """The next dry-run stand-in for an id GrowthBook would have chosen (``dry-run-N``)."""
        self._placeholders += 1
        return f"dry-run-{self._placeholders}"

    def rerun_on_uncertain_write(self, once: Callable[[], T]) -> T:
        """Run a read-plan-write pass again (from a fresh read) after an uncertain write."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(RECONCILE_ATTEMPTS),
            wait=self._backoff,
            retry=tenacity.retry_if_exception_type(_UncertainWriteError),
            sleep=self._sleep,
            before_sleep=self._note_retry,
            reraise=True,
        )
        return retrying(once)

    def paginate(self, path: str, field_name: str) -> Iterator[dict[str, Any]]:
        """Every item of the list ``field_name`` over all pages of ``GET path``."""
        offset = 0
        while True:
            page = self.request("GET", path, params={"limit": PAGE_LIMIT, "offset": offset})
            yield from page[field_name]
            next_offset = page.get("nextOffset")
            if not page.get("hasMore") or next_offset is None or next_offset <= offset:
                return
            offset = int(next_offset)

    def write(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Send a write; in a dry run echo it instead and return None."""
        if self.dry_run:
            request = self._build(method, path, None, body)
            if self._echo is not None:
                self._echo(self._format_dry_run(request, body))
            return None
        return self.request(method, path, body=body)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send one request (retrying what is safe to resend) and return its JSON body."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_RetryableError),
            sleep=self._sleep,
            before_sleep=self._note_retry,
            reraise=True,
        )
        try:
            return retrying(self._attempt, method, path, params, body)
        except _RetryableError as exc:
            raise GrowthBookError(
                f"gave up after {self._max_attempts} attempts; last: {exc.message}",
                method=method,
                path=exc.path,
                status=exc.status,
            ) from None

    def _build(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: dict[str, Any] | None,
    ) -> httpx.Request:
        headers = {"Authorization": f"Bearer {self._key.get_secret_value()}"}
        return self._http.build_request(method, path, params=params, json=body, headers=headers)

    def _format_dry_run(self, request: httpx.Request, body: dict[str, Any]) -> str:
        lines = [f"[dry run, not sent] {request.method} {request.url}"]
        for name, value in request.headers.items():
            shown = "Bearer ***" if name.lower() == "authorization" else value
            lines.append(f"{name}: {shown}")
        lines.append("")
        lines.append(json.dumps(body, indent=2, sort_keys=True))
        return "\n".join(lines)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key.get_secret_value(), "***")

    def _note_retry(self, state: tenacity.RetryCallState) -> None:
        if self._echo is None or self.dry_run or state.outcome is None or not state.next_action:
            return
        error = state.outcome.exception()
        self._echo(f"  retrying in {state.next_action.sleep:.1f}s after: {error}")

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, _RetryableError) and error.retry_after is not None:
            return error.retry_after
        return float(self._backoff(state))

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: dict[str, Any] | None,
    ) -> dict[str, Any]:
        request = self._build(method, path, params, body)
        where: dict[str, Any] = {"method": method, "path": request.url.path}
        reading = method == "GET"
        self._limiter.acquire()
        started = time.perf_counter()
        try:
            response = self._http.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            self._say(f"{method} {request.url} -> {type(exc).__name__}")
            raise _RetryableError(f"could not connect ({type(exc).__name__})", **where) from None
        except httpx.TransportError as exc:
            self._say(f"{method} {request.url} -> {type(exc).__name__}")
            what = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
            message = f"{what} ({type(exc).__name__})"
            if reading:
                raise _RetryableError(message, **where) from None
            raise _UncertainWriteError(
                f"{message}; the write may or may not have been applied", **where
            ) from None
        self._say(
            f"{method} {request.url} -> {response.status_code} "
            f"({time.perf_counter() - started:.2f}s)"
        )
        status = response.status_code
        if status < 300:
            try:
                parsed = response.json()
            except ValueError:
                raise GrowthBookError("the response is not JSON", status=status, **where) from None
            if not isinstance(parsed, dict):
                raise GrowthBookError("the response is not a JSON object", status=status, **where)
            return parsed
        message = self._scrub(_server_message(response))
        retry_after = _parse_retry_after(
            response.headers.get("Retry-After"), lambda: datetime.now(UTC)
        )
        if status == 429:
            raise _RetryableError(
                f"rate limited: {message}", retry_after=retry_after, status=status, **where
            )
        if status >= 500 and status != 501:
            if reading:
                raise _RetryableError(
                    f"server error: {message}", retry_after=retry_after, status=status, **where
                )
            raise _UncertainWriteError(
                f"server error: {message}; the write may or may not have been applied",
                status=status,
                **where,
            )
        gates = _gate_types(response)
        if gates:
            message += f" (gates: {', '.join(gates)})"
        if status == 409 or "stale-base" in gates:
            raise GrowthBookConflict(message, status=status, **where)
        raise GrowthBookError(message, status=status, **where)

    def _say(self, line: str) -> None:
        if self._echo is not None and not self.dry_run:
            self._echo(line)
