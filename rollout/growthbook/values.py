"""The values a GrowthBook feature's experiment rule serves each variation, read from the
feature and experiment as ``aftershock growthbook pull`` stores them (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def _parse_flag_value(raw: Any, value_type: str) -> Any:
    """A value as GrowthBook's REST API gives it (a string) typed by the feature's
    ``valueType``: strings stay strings; booleans, numbers and JSON are parsed."""
    if not isinstance(raw, str) or value_type == "string":
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _applies_to(rule: Mapping[str, Any], environments: Sequence[str]) -> bool:
    if rule.get("allEnvironments") or "environments" not in rule:
        return True
    return bool(set(rule.get("environments") or []) & set(environments))


def growthbook_variation_values(
    feature: Mapping[str, Any],
    experiment: Mapping[str, Any] | None,
    experiment_id: str,
    environments: Sequence[str] = ("production",),
) -> dict[str, list[Any]]:
    """Per variation key (``"0"``, ``"1"``...), the values the feature's rules for the
    experiment serve it (one per rule found; rules of the plan's environments first, else any):
    ``experiment-ref`` rules (variations by id, mapped to keys through the pulled experiment)
    and inline ``experiment`` rules (variations in order), as GrowthBook's REST API returns
    a feature (``FeatureV2``, or per environment in the older shape)."""
    value_type = str(feature.get("valueType", "string"))
    rules: list[Mapping[str, Any]] = list(feature.get("rules") or [])
    for env in (feature.get("environments") or {}).values():
        if isinstance(env, Mapping):
            rules += list(env.get("rules") or [])
    key_of: dict[str, str] = {}
    if experiment is not None:
        key_of = {str(v["variationId"]): str(v["key"]) for v in experiment.get("variations", [])}
    tracking = {experiment_id} | ({str(experiment["id"])} if experiment is not None else set())
    found: list[tuple[bool, dict[str, Any]]] = []
    for rule in rules:
        values: dict[str, Any] = {}
        if rule.get("type") == "experiment-ref":
            if experiment is None or str(rule.get("experimentId")) != str(experiment["id"]):
                continue
            for variation in rule.get("variations") or []:
                key = key_of.get(str(variation.get("variationId")))
                if key is not None:
                    values[key] = _parse_flag_value(variation.get("value"), value_type)
        elif rule.get("type") == "experiment":
            if str(rule.get("trackingKey") or feature.get("id")) not in tracking:
                continue
            for index, variation in enumerate(rule.get("value") or []):
                values[str(index)] = _parse_flag_value(variation.get("value"), value_type)
        if values:
            found.append((_applies_to(rule, environments), values))
    preferred = [v for applies, v in found if applies] or [v for _, v in found]
    by_key: dict[str, list[Any]] = {}
    for values in preferred:
        for key, value in values.items():
            if value not in by_key.setdefault(key, []):
                by_key[key].append(value)
    return by_key
