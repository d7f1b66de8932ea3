"""A rollback stage as GrowthBook saved groups and feature rules.

Each adaptation cohort becomes a saved group (a list of user ids) and each stage a list of
force rules on the feature, one per cohort being rolled back: conditioned on ``$inGroup``, and,
for a partial step, limited by ``coverage`` with a fixed ``seed``, ``hashAttribute`` and
``hashVersion: 2``. Because the seed of a cohort never changes between stages, a user inside
10% coverage is inside 25% too: steps are nested. Users no rule matches keep the feature's
default (the new model).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from growthbook.core import gbhash

HASH_VERSION = 2


def saved_group_id(feature_key: str, cohort: str) -> str:
    """A stable, readable saved-group id for a cohort of a feature's rollback."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{feature_key}-{cohort}".lower()).strip("-")
    return f"aftershock-{slug}"


def cohort_seed(feature_key: str, cohort: str) -> str:
    """The hashing seed of a cohort's partial steps: fixed for the whole rollback."""
    return f"aftershock:{feature_key}:{cohort}"


def build_stage_payload(
    feature_key: str,
    *,
    default_value: Any,
    rollback_value: Any,
    cohorts: Mapping[str, Sequence[str]],
    coverage: Mapping[str, float],
    hash_attribute: str = "id",
) -> dict[str, Any]:
    """The SDK payload fragment after a stage: ``{"features": ..., "savedGroups": ...}``.

    ``cohorts`` maps each cohort to its user ids; ``coverage`` the share of each cohort
    rolled back so far (absent or 0: none yet; 1: all of it).
    """
    groups: dict[str, list[str]] = {}
    rules: list[dict[str, Any]] = []
    for cohort, members in cohorts.items():
        share = float(coverage.get(cohort, 0.0))
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"coverage of cohort {cohort!r} must lie in [0, 1], got {share}")
        group = saved_group_id(feature_key, cohort)
        groups[group] = sorted(members)
        if share == 0.0:
            continue
        rule: dict[str, Any] = {
            "id": f"{group}-rollback",
            "condition": {hash_attribute: {"$inGroup": group}},
            "force": rollback_value,
        }
        if share < 1.0:
            rule |= {
                "coverage": share,
                "hashAttribute": hash_attribute,
                "seed": cohort_seed(feature_key, cohort),
                "hashVersion": HASH_VERSION,
            }
        rules.append(rule)
    return {
        "features": {feature_key: {"defaultValue": default_value, "rules": rules}},
        "savedGroups": groups,
    }


def is_rolled_back(feature_key: str, cohort: str, user_id: str, coverage: float) -> bool:
    """Whether a stage with ``coverage`` of ``cohort`` serves ``user_id`` the rolled-back
    value: GrowthBook's own hash (``growthbook.core.gbhash``, version 2), recomputed because
    force rules emit no exposure events."""
    if coverage >= 1.0:
        return True
    if coverage <= 0.0:
        return False
    bucket = gbhash(cohort_seed(feature_key, cohort), user_id, HASH_VERSION)
    return bucket is not None and bucket < coverage  # half-open, as the SDKs compare
