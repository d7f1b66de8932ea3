"""A rollback stage as GrowthBook saved groups and feature rules, for the SDK and the REST API.

Each adaptation cohort becomes a saved group (a list of user ids) and each stage a list of
force rules on the feature, one per cohort being moved: conditioned on ``$inGroup`` and, for a
partial step, limited by ``coverage`` with ``hashAttribute``, ``hashVersion: 2`` and one
``seed`` for the whole rollback of the feature. Because the seed never changes, a user inside
10% coverage is inside 25% too: steps are nested; and because every cohort shares it, a user
moved to a cohort whose coverage never exceeds their old cohort's is never rolled back
sooner. A cohort moved through a *bridge* value has two rules, the rollback rule first: a
user whose hash is below the rollback coverage gets the old model, one below the (larger)
bridge coverage the bridge value. Users no rule matches keep the feature's other rules and
default (the new model).

The same rules are written two ways: SDK rules (what ``growthbook.GrowthBook`` evaluates, and
what GrowthBook compiles saved-group targeting into) and REST API ``Targeting Rule`` bodies
(GrowthBook's REST API spec, version 5.0.1), whose saved groups are named here and resolved to
GrowthBook's generated ids when they are written (rollout.growthbook.client).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from growthbook.core import gbhash

HASH_VERSION = 2
EVERYONE = "all"  # the cohort of cohort-blind rules: every user, no saved group


def saved_group_id(feature_key: str, cohort: str) -> str:
    """A stable, readable saved-group id (SDK) and name (REST) for a cohort of a rollback."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{feature_key}-{cohort}".lower()).strip("-")
    return f"aftershock-{slug}"


def rollback_seed(feature_key: str) -> str:
    """The hashing seed of every partial step of a feature's rollback."""
    return f"aftershock:{feature_key}"


def owner_tag(feature_key: str) -> str:
    """The description prefix that marks a rule as Aftershock's own."""
    return f"aftershock rollback of {feature_key}"


@dataclass(frozen=True)
class RuleSpec:
    """One force rule: serve ``value`` to ``coverage`` of ``cohort``.

    ``cohort`` is ``EVERYONE`` for a cohort-blind rule. ``exclude_groups`` turns the rule
    around: it then serves everyone *outside* those saved groups (users new to the experiment).
    """

    cohort: str
    value: Any
    coverage: float
    exclude_groups: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if not 0.0 < self.coverage <= 1.0:
            raise ValueError(f"coverage of cohort {self.cohort!r} must lie in (0, 1]")


def _group(feature_key: str, spec: RuleSpec) -> str | None:
    if spec.exclude_groups or spec.cohort == EVERYONE:
        return None
    return saved_group_id(feature_key, spec.cohort)


def sdk_rule(feature_key: str, spec: RuleSpec, hash_attribute: str = "id") -> dict[str, Any]:
    """The rule as the SDK payload carries it."""
    rule: dict[str, Any] = {"id": f"{saved_group_id(feature_key, spec.cohort)}-{spec.note}"}
    group = _group(feature_key, spec)
    if group is not None:
        rule["condition"] = {hash_attribute: {"$inGroup": group}}
    elif spec.exclude_groups:
        rule["condition"] = {
            "$and": [{hash_attribute: {"$notInGroup": g}} for g in spec.exclude_groups]
        }
    rule["force"] = spec.value
    if spec.coverage < 1.0:
        rule |= {
            "coverage": spec.coverage,
            "hashAttribute": hash_attribute,
            "seed": rollback_seed(feature_key),
            "hashVersion": HASH_VERSION,
        }
    return rule


def rest_rule(
    feature_key: str,
    spec: RuleSpec,
    *,
    environments: Sequence[str],
    description: str,
    hash_attribute: str = "id",
) -> dict[str, Any]:
    """The rule as a REST ``Targeting Rule`` body; saved groups named, not yet resolved."""
    body: dict[str, Any] = {
        "description": f"{owner_tag(feature_key)}: {description}",
        "enabled": True,
        "environments": list(environments),
        "type": "force" if spec.coverage >= 1.0 else "rollout",
        "value": rest_value(spec.value),
    }
    group = _group(feature_key, spec)
    if group is not None:
        body["savedGroups"] = [{"match": "any", "ids": [group]}]
    elif spec.exclude_groups:
        body["savedGroups"] = [{"match": "none", "ids": list(spec.exclude_groups)}]
    if spec.coverage < 1.0:
        body |= {
            "coverage": spec.coverage,
            "hashAttribute": hash_attribute,
            "seed": rollback_seed(feature_key),
            "hashVersion": HASH_VERSION,
        }
    return body


def rest_value(value: Any) -> str:
    """A feature value as the REST API takes it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def build_stage_payload(
    feature_key: str,
    *,
    default_value: Any,
    rules: Sequence[RuleSpec],
    groups: Mapping[str, Sequence[str]],
    hash_attribute: str = "id",
) -> dict[str, Any]:
    """The SDK payload fragment after a stage: ``{"features": ..., "savedGroups": ...}``.

    ``groups`` maps saved-group ids to their members; the fragment carries those its rules
    reference.
    """
    sdk_rules = [sdk_rule(feature_key, spec, hash_attribute) for spec in rules]
    used = {g for spec in rules for g in (_group(feature_key, spec), *spec.exclude_groups) if g}
    return {
        "features": {feature_key: {"defaultValue": default_value, "rules": sdk_rules}},
        "savedGroups": {g: sorted(groups[g]) for g in sorted(used)},
    }


def rest_saved_group(
    name: str, members: Sequence[str], hash_attribute: str = "id"
) -> dict[str, Any]:
    """The REST body that creates a cohort's saved group."""
    return {"name": name, "type": "list", "attributeKey": hash_attribute, "values": sorted(members)}


def hash_bucket(feature_key: str, user_id: str) -> float:
    """A user's bucket in [0, 1) for a rollback's partial steps: GrowthBook's own hash
    (``growthbook.core.gbhash``, version 2)."""
    bucket = gbhash(rollback_seed(feature_key), user_id, HASH_VERSION)
    return 1.0 if bucket is None else float(bucket)


def is_rolled_back(feature_key: str, user_id: str, coverage: float) -> bool:
    """Whether a partial rule with ``coverage`` serves ``user_id``: recomputed with
    GrowthBook's hash because force rules emit no exposure events."""
    if coverage >= 1.0:
        return True
    if coverage <= 0.0:
        return False
    return hash_bucket(feature_key, user_id) < coverage  # half-open, as the SDKs do
