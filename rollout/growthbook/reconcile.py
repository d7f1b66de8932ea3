"""Reconciling a feature's Aftershock-owned rules with the desired ones, without any I/O.

What :meth:`rollout.growthbook.client.GrowthBookClient.apply_rules` decides before and after
it writes: which rules a tag owns (:func:`is_owned`), the Targeting Rule body sent for a desired
rule (:func:`canonical_rule`) and how two rules compare (:func:`rule_view`), the edits turning
the owned rules into the desired ones (:func:`plan_ops`), the resulting rule ids
(:func:`ids_by_description`), and the messages of a refusal (:func:`describe_mismatch`) or a
failure (:func:`apply_hint`, from the :class:`Progress` an apply made).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTIVE_DRAFT_STATUSES",
    "Op",
    "Progress",
    "apply_hint",
    "canonical_rule",
    "describe_mismatch",
    "draft_comment",
    "ids_by_description",
    "is_owned",
    "plan_ops",
    "rule_view",
]

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


@dataclass(frozen=True)
class Op:
    """One planned edit of the draft: ``add``, ``update`` or ``delete``."""

    kind: str
    desired: dict[str, Any] | None = None
    rule_id: str | None = None


@dataclass
class Progress:
    """How far an apply got, so an error can say what state GrowthBook was left in."""

    live_version: int | None = None
    draft_version: int | str | None = None
    publishing: bool = False


def is_owned(description: str | None, owner_tag: str) -> bool:
    """Whether a rule description marks the rule as written under ``owner_tag``.

    The tag must be followed by a non-word character or the end, so that
    ``"aftershock plan 3"`` does not own ``"aftershock plan 30: ..."``.
    """
    if not description or not owner_tag:
        return False
    return re.match(re.escape(owner_tag) + r"(?![\w-])", description) is not None


def draft_comment(owner_tag: str) -> str:
    """The comment marking a draft revision as Aftershock's (a later run discards it)."""
    return f"{owner_tag}: draft written by Aftershock"


def rule_view(rule: Mapping[str, Any]) -> dict[str, Any]:
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


def canonical_rule(
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


def plan_ops(owned: list[dict[str, Any]], desired: list[dict[str, Any]]) -> list[Op]:
    """Edits turning the owned rules into ``desired``: deletes, updates, then adds."""
    existing: dict[str, dict[str, Any]] = {}
    surplus: list[dict[str, Any]] = []
    for rule in owned:
        if rule.get("description") in existing:
            surplus.append(rule)
        else:
            existing[str(rule.get("description"))] = rule
    deletes: list[Op] = []
    updates: list[Op] = []
    adds: list[Op] = []
    wanted = {d["description"] for d in desired}
    surplus += [r for d, r in existing.items() if d not in wanted]
    for rule in desired:
        found = existing.get(rule["description"])
        if found is None:
            adds.append(Op("add", desired=rule))
        elif found.get("type") != rule["type"]:  # GrowthBook cannot change a rule's type
            deletes.append(Op("delete", rule_id=found["id"]))
            adds.append(Op("add", desired=rule))
        elif rule_view(found) != rule_view(rule):
            patch = dict(rule)
            old = rule_view(found)
            for name, empty in _OPTIONAL_EMPTY.items():
                if name in old and name not in patch:  # a patch cannot omit to clear
                    patch[name] = copy.copy(empty)
            if "seed" in old and "seed" not in patch:
                patch["seed"] = ""
            updates.append(Op("update", desired=patch, rule_id=found["id"]))
    deletes += [Op("delete", rule_id=r["id"]) for r in surplus]
    return deletes + updates + adds


def ids_by_description(
    ops: list[Op], owned: list[dict[str, Any]], rule_ids: list[str], before: list[str]
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


def describe_mismatch(
    key: str,
    owned: list[dict[str, Any]],
    expected: frozenset[str],
    live_version: int,
    owner_tag: str,
) -> str:
    """Why the owned rules found are not ``expected`` (the ids Aftershock wrote last time)."""
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


def apply_hint(feature_key: str, progress: Progress, command: str, *, publish_refused: bool) -> str:
    """What a failed apply left on GrowthBook, and that ``command`` is to be re-run."""
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
