"""A GrowthBook REST API client that writes Aftershock's rollback rules safely.

What it reads: features (``/v2/features``), experiments (``/v1/experiments``) and saved groups
(``/v1/saved-groups``). What it writes: list saved groups, found by name (GrowthBook chooses
their ids), and a feature's rules, always through one draft revision that is published at the
end, so the live revision either changes once, completely, or not at all.

Safety rules:

* Only rules whose description starts with the caller's ``owner_tag`` are touched; with
  ``expected_rule_ids`` the client refuses (:class:`GrowthBookConflict`) when those rules are
  not exactly the ones it wrote last time, and also when the live revision moves while it works.
* Reads and rejected requests (429, connection never made) are retried with exponential backoff
  and jitter, honouring ``Retry-After``. A write whose outcome is unknown (timeout or 5xx after
  it was sent) is never resent as is: the whole operation starts again from a fresh read, and
  names (saved groups) or descriptions (rules) identify what already exists.
* Requests are spaced to stay under GrowthBook's 60 requests per rolling minute.
* The API key is sent as ``Authorization: Bearer``; it never appears in output, errors or reprs.

The client is not thread-safe: use one per thread.
"""

from __future__ import annotations

import contextlib
import copy
import email.utils
import json
import re
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import httpx
import tenacity
from pydantic import SecretStr

from analytics.errors import AftershockError, ConfigError

if TYPE_CHECKING:
    from analytics.settings import Settings

__all__ = [
    "AppliedRules",
    "GrowthBookClient",
    "GrowthBookConflict",
    "GrowthBookError",
    "is_owned",
]

T = TypeVar("T")

PAGE_LIMIT = 100  # the largest page GrowthBook serves
MAX_RETRY_AFTER = 300.0  # seconds; a longer Retry-After is capped rather than obeyed
RECONCILE_ATTEMPTS = 3  # full read-plan-write passes after a write of unknown outcome
ACTIVE_DRAFT_STATUSES = frozenset({"draft", "pending-review", "approved", "changes-requested"})
_RULE_KEYS = frozenset(
    {
        "description",
        "enabled",
        "condition",
        "savedGroups",
        "prerequisites",
        "allEnvironments",
        "environments",
        "type",
        "value",
        "coverage",
        "hashAttribute",
        "seed",
        "hashVersion",
    }
)
_OPTIONAL_EMPTY: dict[str, Any] = {"condition": "", "savedGroups": [], "prerequisites": []}


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


@dataclass(frozen=True)
class AppliedRules:
    """The outcome of :meth:`GrowthBookClient.apply_rules`.

    ``revision`` is the feature's live revision afterwards (unchanged when nothing needed
    writing, and in a dry run); ``rule_ids`` are the owned rules' ids in rule order (placeholders
    ``dry-run-N`` for rules a dry run would create); ``published`` says whether the call's
    last pass published a revision (False when the rules were already live).
    """

    revision: int
    rule_ids: tuple[str, ...]
    published: bool = False


@dataclass(frozen=True)
class _Op:
    """One planned edit of the draft: ``add``, ``update`` or ``delete``."""

    kind: str
    desired: dict[str, Any] | None = None
    rule_id: str | None = None


@dataclass
class _Progress:
    """How far an apply got, so an error can say what state GrowthBook was left in."""

    live_version: int | None = None
    draft_version: int | str | None = None
    publishing: bool = False


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


def is_owned(description: str | None, owner_tag: str) -> bool:
    """Whether a rule description marks the rule as written under ``owner_tag``.

    The tag must be followed by a non-word character or the end, so that
    ``"aftershock plan 3"`` does not own ``"aftershock plan 30: ..."``.
    """
    if not description or not owner_tag:
        return False
    return re.match(re.escape(owner_tag) + r"(?![\w-])", description) is not None


def _draft_comment(owner_tag: str) -> str:
    return f"{owner_tag}: draft written by Aftershock"


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


def _rule_view(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A rule in comparable Targeting Rule terms, from a GrowthBook rule or a desired body."""
    view: dict[str, Any] = {
        "description": rule.get("description", ""),
        "enabled": rule.get("enabled", True),
        "type": rule.get("type", "force"),
        "value": rule.get("value"),
        "allEnvironments": bool(rule.get("allEnvironments", False)),
        "environments": sorted(rule.get("environments") or []),
    }
    condition = rule.get("condition") or ""
    if condition not in ("", "{}"):
        view["condition"] = condition
    groups = rule.get("savedGroups")
    if groups is None and "savedGroupTargeting" in rule:
        groups = [
            {"match": g["matchType"], "ids": list(g["savedGroups"])}
            for g in rule["savedGroupTargeting"]
        ]
    if groups:
        view["savedGroups"] = [{"match": g["match"], "ids": list(g["ids"])} for g in groups]
    if rule.get("prerequisites"):
        view["prerequisites"] = [dict(p) for p in rule["prerequisites"]]
    if view["type"] == "rollout":
        view["coverage"] = rule.get("coverage")
        view["hashAttribute"] = rule.get("hashAttribute")
        view["hashVersion"] = rule.get("hashVersion", 2)
        if rule.get("seed"):
            view["seed"] = rule["seed"]
    return view


def _canonical_rule(
    rule: Mapping[str, Any], owner_tag: str, environments: Sequence[str]
) -> dict[str, Any]:
    """The Targeting Rule body sent for one desired rule (checked, fields made explicit).

    A rule with ``coverage < 1`` is a ``rollout`` (``hashAttribute`` required, ``hashVersion``
    defaults to 2); otherwise a ``force`` rule, and coverage/hash fields are dropped.
    """
    unknown = set(rule) - _RULE_KEYS
    if unknown:
        raise ValueError(f"rule fields not supported by apply_rules: {sorted(unknown)}")
    description = rule.get("description")
    if not isinstance(description, str) or not is_owned(description, owner_tag):
        raise ValueError(f"rule description {description!r} must start with {owner_tag!r}")
    if not isinstance(rule.get("value"), str):
        raise ValueError(f"rule {description!r}: value must be a JSON-encoded string")
    envs = sorted(set(environments))
    if rule.get("allEnvironments") or (
        "environments" in rule and sorted(set(rule["environments"])) != envs
    ):
        raise ValueError(f"rule {description!r}: environments must be those of apply_rules")
    body: dict[str, Any] = {
        "description": description,
        "enabled": bool(rule.get("enabled", True)),
        "type": "force",
        "value": rule["value"],
        "allEnvironments": False,
        "environments": envs,
    }
    condition = rule.get("condition") or ""
    if condition not in ("", "{}"):
        body["condition"] = condition
    if rule.get("savedGroups"):
        body["savedGroups"] = [
            {"match": g["match"], "ids": list(g["ids"])} for g in rule["savedGroups"]
        ]
    if rule.get("prerequisites"):
        body["prerequisites"] = [dict(p) for p in rule["prerequisites"]]
    coverage = rule.get("coverage")
    if coverage is not None and not 0.0 <= float(coverage) <= 1.0:
        raise ValueError(f"rule {description!r}: coverage must lie in [0, 1]")
    if coverage is not None and float(coverage) < 1.0:
        if not rule.get("hashAttribute"):
            raise ValueError(f"rule {description!r}: coverage < 1 needs a hashAttribute")
        body["type"] = "rollout"
        body["coverage"] = float(coverage)
        body["hashAttribute"] = rule["hashAttribute"]
        if rule.get("seed"):
            body["seed"] = rule["seed"]
        body["hashVersion"] = rule.get("hashVersion", 2)
    return body


class GrowthBookClient:
    """A GrowthBook REST API client (httpx): retries, rate limit, dry run, safe rule writes.

    ``base_url`` is the API host (``https://api.growthbook.io``; a trailing ``/api`` is
    accepted). ``max_attempts`` bounds every request (first try included). With
    ``dry_run=True`` reads are sent but writes are not: ``echo`` receives each write exactly as
    it would have been sent (key masked) and the methods return placeholder ids
    (``dry-run-1``...). Otherwise ``echo`` receives one line per request. ``sleep`` and
    ``clock`` (monotonic seconds) are injectable for tests.
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
        transport: httpx.BaseTransport | None = None,
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
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> GrowthBookClient:
        """A client for ``AFTERSHOCK_GROWTHBOOK_URL`` / ``AFTERSHOCK_GROWTHBOOK_API_KEY``."""
        if not settings.growthbook_url or settings.growthbook_api_key is None:
            raise ConfigError(
                "set AFTERSHOCK_GROWTHBOOK_URL and AFTERSHOCK_GROWTHBOOK_API_KEY to talk to "
                "GrowthBook"
            )
        return cls(settings.growthbook_url, settings.growthbook_api_key, **kwargs)

    def __repr__(self) -> str:
        return f"GrowthBookClient({self.base_url!r}, api_key='***', dry_run={self.dry_run})"

    def __enter__(self) -> GrowthBookClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    # ----------------------------------------------------------------- reads

    def list_features(self) -> list[dict[str, Any]]:
        """Every feature (``FeatureV2``: rules with per-rule environments), all pages."""
        return list(self._paginate("/v2/features", "features"))

    def get_feature(self, key: str) -> dict[str, Any]:
        """One feature (``FeatureV2``) with its live rules and live revision summary."""
        body = self._request("GET", f"/v2/features/{key}")
        return dict(body["feature"])

    def list_experiments(self) -> list[dict[str, Any]]:
        """Every experiment with its variations and phases (traffic split = weights)."""
        return list(self._paginate("/v1/experiments", "experiments"))

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment with variations, phases (``trafficSplit`` weights) and status."""
        body = self._request("GET", f"/v1/experiments/{experiment_id}")
        return dict(body["experiment"])

    def ping(self) -> None:
        """One cheap authenticated read (a page of one feature): GrowthBook answers and the
        key is accepted."""
        self._request("GET", "/v2/features", params={"limit": 1})

    def list_saved_groups(self) -> list[dict[str, Any]]:
        """Every saved group, all pages."""
        return list(self._paginate("/v1/saved-groups", "savedGroups"))

    # ---------------------------------------------------------------- writes

    def upsert_saved_group(
        self,
        name: str,
        attribute_key: str,
        values: list[str],
        *,
        rerun_command: str | None = None,
    ) -> str:
        """Make the list saved group called ``name`` hold ``values``; return its GrowthBook id.

        Idempotent: found by name, created when missing, its values replaced only when they
        differ (compared as sets; sent sorted). Refuses (:class:`GrowthBookConflict`) when
        several groups share the name or the group keys on another attribute.
        """
        wanted = sorted(set(values))
        command = rerun_command or (
            f"the same upsert_saved_group({name!r}, {attribute_key!r}, ...) call"
        )

        def once() -> str:
            found = [g for g in self.list_saved_groups() if g.get("name") == name]
            if len(found) > 1:
                ids = ", ".join(g["id"] for g in found)
                raise GrowthBookConflict(
                    f"{len(found)} saved groups are named {name!r} ({ids})",
                    rerun=f"Delete or rename the duplicates in GrowthBook, then re-run {command}.",
                )
            if not found:
                created = self._write(
                    "POST",
                    "/v1/saved-groups",
                    {"name": name, "type": "list", "attributeKey": attribute_key, "values": wanted},
                )
                return self._placeholder() if created is None else str(created["savedGroup"]["id"])
            group = found[0]
            if group.get("type") != "list" or group.get("attributeKey") != attribute_key:
                raise GrowthBookConflict(
                    f"saved group {name!r} ({group['id']}) is a {group.get('type')} group on "
                    f"{group.get('attributeKey')!r}, not a list on {attribute_key!r}",
                    rerun=f"Rename or fix it in GrowthBook, then re-run {command}.",
                )
            if sorted(set(group.get("values") or [])) != wanted:
                self._write("POST", f"/v1/saved-groups/{group['id']}", {"values": wanted})
            return str(group["id"])

        hint = (
            f"Saved group {name!r} is either fully written or untouched (one request); "
            f"re-run {command}."
        )
        try:
            return self._reconcile(once)
        except GrowthBookError as exc:
            if isinstance(exc, GrowthBookConflict) and exc.method is None:
                raise  # our own refusal, with its own hint
            raise exc.with_rerun(hint) from exc.__cause__

    def apply_rules(
        self,
        feature_key: str,
        rules: list[dict[str, Any]],
        *,
        owner_tag: str,
        environments: list[str],
        expected_rule_ids: Collection[str] | None = None,
        rerun_command: str | None = None,
    ) -> AppliedRules:
        """Make the feature's rules owned by ``owner_tag`` equal ``rules``, first in order.

        ``rules`` are Targeting Rule bodies (saved-group ids resolved) whose descriptions start
        with ``owner_tag`` and are unique: the description identifies a rule across runs.
        Owned rules are updated in place where possible, missing ones added, surplus owned
        ones deleted, and all owned rules moved before every other rule; all in one draft
        revision, then published. Rules not owned are never changed.

        Refuses with :class:`GrowthBookConflict` when ``expected_rule_ids`` is given and the
        owned rules found differ from it (unless they already equal ``rules``: nothing to
        write), or when the live revision changes while it works. Without
        ``expected_rule_ids`` every rule whose description carries the tag counts as owned.
        Nothing is written when the owned rules already match. On failure the live revision
        is unchanged (a draft may be left; the next run discards it) and the error's
        ``rerun`` says what to re-run.
        """
        desired = [_canonical_rule(r, owner_tag, environments) for r in rules]
        descriptions = [d["description"] for d in desired]
        if len(set(descriptions)) != len(descriptions):
            raise ValueError("rule descriptions must be unique: they identify the rules")
        command = rerun_command or (
            f"the same apply_rules({feature_key!r}, ...) call (owner_tag {owner_tag!r}, "
            f"same rules and expected_rule_ids)"
        )
        expected = None if expected_rule_ids is None else frozenset(expected_rule_ids)
        progress = _Progress()

        def once() -> AppliedRules:
            progress.publishing = False
            progress.draft_version = None
            return self._apply_once(feature_key, desired, owner_tag, expected, progress, command)

        try:
            return self._reconcile(once)
        except GrowthBookError as exc:
            if isinstance(exc, GrowthBookConflict) and exc.method is None:
                raise  # our own refusal, with its own hint
            refused = exc.status is not None and exc.status < 500
            hint = self._apply_hint(feature_key, progress, command, publish_refused=refused)
            raise exc.with_rerun(hint) from exc.__cause__

    # -------------------------------------------------------- apply internals

    @staticmethod
    def _apply_hint(
        feature_key: str, progress: _Progress, command: str, *, publish_refused: bool
    ) -> str:
        live = progress.live_version
        if progress.publishing and not publish_refused:
            return (
                f"The publish of draft revision {progress.draft_version} of {feature_key!r} may "
                f"or may not have taken effect. Re-run {command}: it re-reads the feature and "
                f"either finds the rules live or publishes them again."
            )
        if progress.draft_version is not None:
            return (
                f"The live revision of {feature_key!r} is unchanged (still {live}); draft "
                f"revision {progress.draft_version} was left unpublished and the next run "
                f"discards it. Re-run {command}."
            )
        state = f" (live revision still {live})" if live is not None else ""
        return f"Nothing was changed on {feature_key!r}{state}. Re-run {command}."

    def _apply_once(
        self,
        key: str,
        desired: list[dict[str, Any]],
        owner_tag: str,
        expected: frozenset[str] | None,
        progress: _Progress,
        command: str,
    ) -> AppliedRules:
        feature = self._request("GET", f"/v2/features/{key}", params={"withRevisions": "drafts"})[
            "feature"
        ]
        live_version = int(feature["revision"]["version"])
        progress.live_version = live_version
        live_rules: list[dict[str, Any]] = list(feature.get("rules") or [])
        owned = [r for r in live_rules if is_owned(r.get("description"), owner_tag)]
        stale_drafts = [
            int(d["version"])
            for d in feature.get("revisions") or []
            if d.get("status") in ACTIVE_DRAFT_STATUSES
            and d.get("comment") == _draft_comment(owner_tag)
        ]
        ops = self._plan(owned, desired)
        current_ids = [r["id"] for r in live_rules]
        owned_ids = {r["id"] for r in owned}
        by_description = {r.get("description"): r["id"] for r in owned}
        converged = not ops and current_ids[: len(owned)] == [
            by_description[d["description"]] for d in desired
        ]
        if converged:  # nothing to write, so nothing to refuse either
            for stale in stale_drafts:
                self._write("POST", f"/v2/features/{key}/revisions/{stale}/discard", {})
            ids = tuple(by_description[d["description"]] for d in desired)
            return AppliedRules(live_version, ids, published=False)
        if expected is not None and owned_ids != expected:
            raise GrowthBookConflict(
                self._describe_mismatch(key, owned, expected, live_version, owner_tag),
                rerun=(
                    f"Nothing was changed. Review {key!r} in GrowthBook; if the rules found may "
                    f"be taken over, re-run {command} with expected_rule_ids={sorted(owned_ids)}."
                ),
            )
        for stale in stale_drafts:
            self._write("POST", f"/v2/features/{key}/revisions/{stale}/discard", {})

        draft = self._write(
            "POST",
            f"/v2/features/{key}/revisions",
            {"comment": _draft_comment(owner_tag), "title": f"{owner_tag} (Aftershock)"},
        )
        base = f"/v2/features/{key}/revisions"
        if draft is None:
            version: int | str = self._placeholder()
        else:
            version = int(draft["revision"]["version"])
            progress.draft_version = version
            if int(draft["revision"]["baseVersion"]) != live_version:
                self._conflict_live_moved(
                    key, version, live_version, draft["revision"]["baseVersion"]
                )
        progress.draft_version = version
        rule_ids = list(current_ids)
        for op in ops:
            if op.kind == "delete":
                body = self._write("DELETE", f"{base}/{version}/rules/{op.rule_id}", {})
                rule_ids.remove(str(op.rule_id))
            elif op.kind == "update":
                patch = {k: v for k, v in (op.desired or {}).items() if k != "type"}
                body = self._write("PUT", f"{base}/{version}/rules/{op.rule_id}", {"rule": patch})
            else:
                before = set(rule_ids)
                body = self._write("POST", f"{base}/{version}/rules", {"rule": op.desired})
                if body is None:
                    rule_ids.append(self._placeholder())
                else:
                    added = [r["id"] for r in body["revision"]["rules"] if r["id"] not in before]
                    if len(added) != 1:
                        raise GrowthBookError(
                            f"adding rule {(op.desired or {}).get('description')!r} to draft "
                            f"{version} did not return exactly one new rule id",
                            method="POST",
                            path=f"/api{base}/{version}/rules",
                        )
                    rule_ids.append(added[0])
            if body is not None:
                rule_ids = [r["id"] for r in body["revision"]["rules"]]
        final_ids = self._ids_by_description(ops, owned, rule_ids, current_ids)
        ours = [final_ids[d["description"]] for d in desired]
        target = ours + [i for i in rule_ids if i not in set(ours)]
        if rule_ids != target:
            self._write("POST", f"{base}/{version}/rules/reorder", {"ruleIds": target})
        if draft is None:
            return AppliedRules(live_version, tuple(ours), published=False)

        now_live = int(
            self._request("GET", f"/v2/features/{key}")["feature"]["revision"]["version"]
        )
        if now_live != live_version:
            self._conflict_live_moved(key, version, live_version, now_live)
        progress.publishing = True
        try:
            published = self._write(
                "POST",
                f"{base}/{version}/publish",
                {"comment": f"{owner_tag}: published by Aftershock"},
            )
        except GrowthBookConflict as exc:  # GrowthBook refused an out-of-date draft
            self._conflict_live_moved(key, version, live_version, f"newer: {exc.message}")
        assert published is not None
        return AppliedRules(int(published["revision"]["version"]), tuple(ours), published=True)

    @staticmethod
    def _plan(owned: list[dict[str, Any]], desired: list[dict[str, Any]]) -> list[_Op]:
        """Edits turning the owned rules into ``desired``: deletes, updates, then adds."""
        existing: dict[str, dict[str, Any]] = {}
        surplus: list[dict[str, Any]] = []
        for rule in owned:
            if rule.get("description") in existing:
                surplus.append(rule)
            else:
                existing[str(rule.get("description"))] = rule
        deletes: list[_Op] = []
        updates: list[_Op] = []
        adds: list[_Op] = []
        wanted = {d["description"] for d in desired}
        surplus += [r for d, r in existing.items() if d not in wanted]
        for rule in desired:
            found = existing.get(rule["description"])
            if found is None:
                adds.append(_Op("add", desired=rule))
            elif found.get("type") != rule["type"]:  # GrowthBook cannot change a rule's type
                deletes.append(_Op("delete", rule_id=found["id"]))
                adds.append(_Op("add", desired=rule))
            elif _rule_view(found) != _rule_view(rule):
                patch = dict(rule)
                old = _rule_view(found)
                for name, empty in _OPTIONAL_EMPTY.items():
                    if name in old and name not in patch:  # a patch cannot omit to clear
                        patch[name] = copy.copy(empty)
                if "seed" in old and "seed" not in patch:
                    patch["seed"] = ""
                updates.append(_Op("update", desired=patch, rule_id=found["id"]))
        deletes += [_Op("delete", rule_id=r["id"]) for r in surplus]
        return deletes + updates + adds

    @staticmethod
    def _ids_by_description(
        ops: list[_Op], owned: list[dict[str, Any]], rule_ids: list[str], before: list[str]
    ) -> dict[str, str]:
        """Each desired description's rule id in the draft (kept, updated or added)."""
        deleted = {op.rule_id for op in ops if op.kind == "delete"}
        ids: dict[str, str] = {}
        for rule in owned:
            if rule["id"] not in deleted:
                ids.setdefault(str(rule.get("description")), rule["id"])
        added = [i for i in rule_ids if i not in set(before)]
        add_ops = [op for op in ops if op.kind == "add"]
        for op, rule_id in zip(add_ops, added, strict=True):
            ids[str((op.desired or {})["description"])] = rule_id
        return ids

    @staticmethod
    def _describe_mismatch(
        key: str,
        owned: list[dict[str, Any]],
        expected: frozenset[str],
        live_version: int,
        owner_tag: str,
    ) -> str:
        found = {r["id"]: r.get("description") for r in owned}
        extra = [f"{i} ({found[i]!r})" for i in sorted(set(found) - expected)]
        missing = sorted(expected - set(found))
        parts = []
        if extra:
            parts.append(f"not written by Aftershock: {', '.join(extra)}")
        if missing:
            parts.append(f"missing (edited or removed by someone): {', '.join(missing)}")
        return (
            f"feature {key!r} (live revision {live_version}): the rules tagged {owner_tag!r} are "
            f"not the ones Aftershock wrote; {'; '.join(parts)}; refusing to overwrite them"
        )

    def _conflict_live_moved(self, key: str, draft: int | str, was: int, now: Any) -> NoReturn:
        self._discard_quietly(key, draft)
        raise GrowthBookConflict(
            f"feature {key!r} was published by someone else while Aftershock was writing "
            f"(live revision {was} -> {now}); draft {draft} was discarded",
            rerun="Nothing was published. Review the feature, then re-run the same apply_rules.",
        )

    def _discard_quietly(self, key: str, version: int | str) -> None:
        with contextlib.suppress(GrowthBookError):  # the next run discards it
            self._write("POST", f"/v2/features/{key}/revisions/{version}/discard", {})

    # ------------------------------------------------------------- transport

    def _placeholder(self) -> str:
        self._placeholders += 1
        return f"dry-run-{self._placeholders}"

    def _reconcile(self, once: Callable[[], T]) -> T:
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

    def _paginate(self, path: str, field_name: str) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self._request("GET", path, params={"limit": PAGE_LIMIT, "offset": offset})
            yield from page[field_name]
            next_offset = page.get("nextOffset")
            if not page.get("hasMore") or next_offset is None or next_offset <= offset:
                return
            offset = int(next_offset)

    def _write(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Send a write; in a dry run echo it instead and return None."""
        if self.dry_run:
            request = self._build(method, path, None, body)
            if self._echo is not None:
                self._echo(self._format_dry_run(request, body))
            return None
        return self._request(method, path, body=body)

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

    def _request(
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
        gates = self._gate_types(response)
        if gates:
            message += f" (gates: {', '.join(gates)})"
        if status == 409 or "stale-base" in gates:
            raise GrowthBookConflict(message, status=status, **where)
        raise GrowthBookError(message, status=status, **where)

    @staticmethod
    def _gate_types(response: httpx.Response) -> list[str]:
        """The publishing gates named by a 422 answer (e.g. ``stale-base``)."""
        try:
            gates = response.json().get("gates") or []
        except (ValueError, AttributeError):
            return []
        return [str(g.get("type")) for g in gates if isinstance(g, dict)]

    def _say(self, line: str) -> None:
        if self._echo is not None and not self.dry_run:
            self._echo(line)
