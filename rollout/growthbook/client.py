"""A GrowthBook REST API client that writes Aftershock's rollback rules safely.

What it reads: features (``/v2/features``), experiments (``/v1/experiments``) and saved groups
(``/v1/saved-groups``). What it writes: list saved groups, found by name (GrowthBook chooses
their ids), and a feature's rules, always through one draft revision that is published at the
end, so the live revision either changes once, completely, or not at all.

Safety rules:

* Only rules whose description starts with the caller's ``owner_tag`` are touched; with
  ``expected_rule_ids`` the client refuses (:class:`GrowthBookConflict`) when those rules are
  not exactly the ones it wrote last time, and also when the live revision moves while it works.
* A write whose outcome is unknown is never resent as is: the whole operation starts again from
  a fresh read, and names (saved groups) or descriptions (rules) identify what already exists.

Requests, retries, the rate limit, dry runs, errors and the secret API key are the transport's
(:mod:`rollout.growthbook.transport`); the decisions of a rule write, without I/O, are in
:mod:`rollout.growthbook.reconcile`. The client is not thread-safe: use one per thread.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
from pydantic import SecretStr

from analytics.errors import ConfigError
from rollout.growthbook.reconcile import (
    ACTIVE_DRAFT_STATUSES,
    Progress,
    apply_hint,
    canonical_rule,
    describe_mismatch,
    draft_comment,
    ids_by_description,
    is_owned,
    plan_ops,
)
from rollout.growthbook.transport import GrowthBookConflict, GrowthBookError, Transport

if TYPE_CHECKING:
    from analytics.settings import Settings

__all__ = [
    "AppliedRules",
    "GrowthBookClient",
    "GrowthBookConflict",
    "GrowthBookError",
    "is_owned",
]


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


class GrowthBookClient:
    """A GrowthBook REST API client (httpx): retries, rate limit, dry run, safe rule writes.

    ``base_url`` is the API host (``https://api.growthbook.io``; a trailing ``/api`` is
    accepted). ``max_attempts`` bounds every request (first try included). With
    ``dry_run=True`` reads are sent but writes are not: ``echo`` receives each write exactly as
    it would have been sent (key masked) and the methods return placeholder ids
    (``dry-run-1``...). Otherwise ``echo`` receives one line per request. ``sleep`` and
    ``clock`` (monotonic seconds) are injectable for tests, ``transport`` (an httpx transport)
    too.
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
        self._api = Transport(
            base_url,
            api_key,
            timeout=timeout,
            max_attempts=max_attempts,
            requests_per_minute=requests_per_minute,
            dry_run=dry_run,
            echo=echo,
            sleep=sleep,
            clock=clock,
            http_transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> GrowthBookClient:
        """A client for ``AFTERSHOCK_GROWTHBOOK_URL`` / ``AFTERSHOCK_GROWTHBOOK_API_KEY``."""
        if not settings.growthbook_url or settings.growthbook_api_key is None:
            raise ConfigError(
                "GrowthBook is not configured: set AFTERSHOCK_GROWTHBOOK_URL and "
                "AFTERSHOCK_GROWTHBOOK_API_KEY"
            )
        return cls(settings.growthbook_url, settings.growthbook_api_key, **kwargs)

    @property
    def base_url(self) -> str:
        """The API host, without a trailing ``/`` or ``/api``."""
        return self._api.base_url

    @property
    def dry_run(self) -> bool:
        """Whether writes are only echoed, not sent."""
        return self._api.dry_run

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
        self._api.close()

    # ----------------------------------------------------------------- reads

    def list_features(self) -> list[dict[str, Any]]:
        """Every feature (``FeatureV2``: rules with per-rule environments), all pages."""
        return list(self._api.paginate("/v2/features", "features"))

    def get_feature(self, key: str) -> dict[str, Any]:
        """One feature (``FeatureV2``) with its live rules and live revision summary."""
        body = self._api.request("GET", f"/v2/features/{key}")
        return dict(body["feature"])

    def list_experiments(self) -> list[dict[str, Any]]:
        """Every experiment with its variations and phases (traffic split = weights)."""
        return list(self._api.paginate("/v1/experiments", "experiments"))

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment with variations, phases (``trafficSplit`` weights) and status."""
        body = self._api.request("GET", f"/v1/experiments/{experiment_id}")
        return dict(body["experiment"])

    def ping(self) -> None:
        """One cheap authenticated read (a page of one feature): GrowthBook answers and the
        key is accepted."""
        self._api.request("GET", "/v2/features", params={"limit": 1})

    def list_saved_groups(self) -> list[dict[str, Any]]:
        """Every saved group, all pages."""
        return list(self._api.paginate("/v1/saved-groups", "savedGroups"))

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
                created = self._api.write(
                    "POST",
                    "/v1/saved-groups",
                    {"name": name, "type": "list", "attributeKey": attribute_key, "values": wanted},
                )
                return (
                    self._api.placeholder() if created is None else str(created["savedGroup"]["id"])
                )
            group = found[0]
            if group.get("type") != "list" or group.get("attributeKey") != attribute_key:
                raise GrowthBookConflict(
                    f"saved group {name!r} ({group['id']}) is a {group.get('type')} group on "
                    f"{group.get('attributeKey')!r}, not a list on {attribute_key!r}",
                    rerun=f"Rename or fix it in GrowthBook, then re-run {command}.",
                )
            if sorted(set(group.get("values") or [])) != wanted:
                self._api.write("POST", f"/v1/saved-groups/{group['id']}", {"values": wanted})
            return str(group["id"])

        hint = (
            f"Saved group {name!r} is either fully written or untouched (one request); "
            f"re-run {command}."
        )
        try:
            return self._api.rerun_on_uncertain_write(once)
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
        desired = [canonical_rule(r, owner_tag, environments) for r in rules]
        descriptions = [d["description"] for d in desired]
        if len(set(descriptions)) != len(descriptions):
            raise ValueError("rule descriptions must be unique: they identify the rules")
        command = rerun_command or (
            f"the same apply_rules({feature_key!r}, ...) call (owner_tag {owner_tag!r}, "
            f"same rules and expected_rule_ids)"
        )
        expected = None if expected_rule_ids is None else frozenset(expected_rule_ids)
        progress = Progress()

        def once() -> AppliedRules:
            progress.publishing = False
            progress.draft_version = None
            return self._apply_once(feature_key, desired, owner_tag, expected, progress, command)

        try:
            return self._api.rerun_on_uncertain_write(once)
        except GrowthBookError as exc:
            if isinstance(exc, GrowthBookConflict) and exc.method is None:
                raise  # our own refusal, with its own hint
            refused = exc.status is not None and exc.status < 500
            hint = apply_hint(feature_key, progress, command, publish_refused=refused)
            raise exc.with_rerun(hint) from exc.__cause__

    # -------------------------------------------------------- apply internals

    def _apply_once(
        self,
        key: str,
        desired: list[dict[str, Any]],
        owner_tag: str,
        expected: frozenset[str] | None,
        progress: Progress,
        command: str,
    ) -> AppliedRules:
        feature = self._api.request(
            "GET", f"/v2/features/{key}", params={"withRevisions": "drafts"}
        )["feature"]
        live_version = int(feature["revision"]["version"])
        progress.live_version = live_version
        live_rules: list[dict[str, Any]] = list(feature.get("rules") or [])
        owned = [r for r in live_rules if is_owned(r.get("description"), owner_tag)]
        stale_drafts = [
            int(d["version"])
            for d in feature.get("revisions") or []
            if d.get("status") in ACTIVE_DRAFT_STATUSES
            and d.get("comment") == draft_comment(owner_tag)
        ]
        ops = plan_ops(owned, desired)
        current_ids = [r["id"] for r in live_rules]
        owned_ids = {r["id"] for r in owned}
        by_description = {r.get("description"): r["id"] for r in owned}
        converged = not ops and current_ids[: len(owned)] == [
            by_description[d["description"]] for d in desired
        ]
        if converged:  # nothing to write, so nothing to refuse either
            for stale in stale_drafts:
                self._api.write("POST", f"/v2/features/{key}/revisions/{stale}/discard", {})
            ids = tuple(by_description[d["description"]] for d in desired)
            return AppliedRules(live_version, ids, published=False)
        if expected is not None and owned_ids != expected:
            raise GrowthBookConflict(
                describe_mismatch(key, owned, expected, live_version, owner_tag),
                rerun=(
                    f"Nothing was changed. Review {key!r} in GrowthBook; if the rules found may "
                    f"be taken over, re-run {command} with expected_rule_ids={sorted(owned_ids)}."
                ),
            )
        for stale in stale_drafts:
            self._api.write("POST", f"/v2/features/{key}/revisions/{stale}/discard", {})

        draft = self._api.write(
            "POST",
            f"/v2/features/{key}/revisions",
            {"comment": draft_comment(owner_tag), "title": f"{owner_tag} (Aftershock)"},
        )
        base = f"/v2/features/{key}/revisions"
        if draft is None:
            version: int | str = self._api.placeholder()
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
                body = self._api.write("DELETE", f"{base}/{version}/rules/{op.rule_id}", {})
                rule_ids.remove(str(op.rule_id))
            elif op.kind == "update":
                patch = {k: v for k, v in (op.desired or {}).items() if k != "type"}
                body = self._api.write(
                    "PUT", f"{base}/{version}/rules/{op.rule_id}", {"rule": patch}
                )
            else:
                before = set(rule_ids)
                body = self._api.write("POST", f"{base}/{version}/rules", {"rule": op.desired})
                if body is None:
                    rule_ids.append(self._api.placeholder())
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
        final_ids = ids_by_description(ops, owned, rule_ids, current_ids)
        ours = [final_ids[d["description"]] for d in desired]
        target = ours + [i for i in rule_ids if i not in set(ours)]
        if rule_ids != target:
            self._api.write("POST", f"{base}/{version}/rules/reorder", {"ruleIds": target})
        if draft is None:
            return AppliedRules(live_version, tuple(ours), published=False)

        now_live = int(
            self._api.request("GET", f"/v2/features/{key}")["feature"]["revision"]["version"]
        )
        if now_live != live_version:
            self._conflict_live_moved(key, version, live_version, now_live)
        progress.publishing = True
        try:
            published = self._api.write(
                "POST",
                f"{base}/{version}/publish",
                {"comment": f"{owner_tag}: published by Aftershock"},
            )
        except GrowthBookConflict as exc:  # GrowthBook refused an out-of-date draft
            self._conflict_live_moved(key, version, live_version, f"newer: {exc.message}")
        assert published is not None
        return AppliedRules(int(published["revision"]["version"]), tuple(ours), published=True)

    def _conflict_live_moved(self, key: str, draft: int | str, was: int, now: Any) -> NoReturn:
        self._discard_quietly(key, draft)
        raise GrowthBookConflict(
            f"feature {key!r} was published by someone else while Aftershock was writing "
            f"(live revision {was} -> {now}); draft {draft} was discarded",
            rerun="Nothing was published. Review the feature, then re-run the same apply_rules.",
        )

    def _discard_quietly(self, key: str, version: int | str) -> None:
        with contextlib.suppress(GrowthBookError):  # the next run discards it
            self._api.write("POST", f"/v2/features/{key}/revisions/{version}/discard", {})
