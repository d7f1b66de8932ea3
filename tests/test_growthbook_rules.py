"""Stages as GrowthBook rules, checked by evaluating users with the official SDK."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from growthbook import GrowthBook
from growthbook.core import gbhash

from rollout.growthbook.rules import (
    RuleSpec,
    build_stage_payload,
    is_rolled_back,
    owner_tag,
    rest_rule,
    rest_value,
    rollback_seed,
    saved_group_id,
)

SDK_CASES = Path(__file__).resolve().parent / "reference" / "growthbook" / "sdk-hash-cases.json"


def test_hash_matches_growthbooks_cross_sdk_vectors() -> None:
    # GrowthBook's cross-SDK test vectors (section "hash" of cases.json; see
    # tests/reference/growthbook/README.md).
    cases = json.loads(SDK_CASES.read_text())["hash"]
    assert len(cases) > 10
    for seed, value, version, expected in cases:
        got = gbhash(seed, value, version)
        assert got == expected if expected is None else got == pytest.approx(expected, abs=1e-4)


def value_served(payload: dict, user: str) -> str:
    gb = GrowthBook(
        attributes={"id": user}, features=payload["features"], saved_groups=payload["savedGroups"]
    )
    try:
        return str(gb.get_feature_value("chat-model", "unset"))
    finally:
        gb.destroy()


def test_each_rule_form_serves_what_it_says_with_the_sdk() -> None:
    users = [f"u{i:05d}" for i in range(4000)]
    rng = np.random.default_rng(1)
    cohort_of = dict(zip(users, rng.choice(["calm", "adapted"], len(users)), strict=True))
    groups = {
        saved_group_id("chat-model", c): [u for u in users if cohort_of[u] == c]
        for c in ("calm", "adapted")
    }
    rules = [
        RuleSpec("calm", "old", 1.0, note="rollback"),
        RuleSpec("adapted", "old", 0.1, note="rollback"),
        RuleSpec("adapted", "bridge", 0.4, note="bridge"),
        RuleSpec("unexposed", "old", 1.0, exclude_groups=tuple(groups), note="freeze"),
    ]
    payload = build_stage_payload("chat-model", default_value="new", rules=rules, groups=groups)
    for user in [*users, "someone-new", "another-one"]:
        cohort = cohort_of.get(user)
        if cohort is None or cohort == "calm" or is_rolled_back("chat-model", user, 0.1):
            want = "old"
        elif is_rolled_back("chat-model", user, 0.4):
            want = "bridge"
        else:
            want = "new"
        assert value_served(payload, user) == want, user
    adapted = [u for u in users if cohort_of[u] == "adapted"]
    share = sum(value_served(payload, u) == "old" for u in adapted) / len(adapted)
    assert share == pytest.approx(0.1, abs=0.03)


def test_rules_carry_growthbooks_partial_rollout_fields_in_both_forms() -> None:
    spec = RuleSpec("adapted", "old", 0.1, note="rollback")
    payload = build_stage_payload(
        "chat-model",
        default_value="new",
        rules=[spec],
        groups={"aftershock-chat-model-adapted": ["b", "a"], "unused": ["c"]},
    )
    [rule] = payload["features"]["chat-model"]["rules"]
    assert rule["condition"] == {"id": {"$inGroup": "aftershock-chat-model-adapted"}}
    assert (rule["coverage"], rule["hashAttribute"], rule["hashVersion"]) == (0.1, "id", 2)
    assert rule["seed"] == rollback_seed("chat-model")
    assert payload["savedGroups"] == {"aftershock-chat-model-adapted": ["a", "b"]}
    body = rest_rule("chat-model", spec, environments=["production"], description="stage 3")
    assert body["type"] == "rollout" and body["value"] == "old"
    assert body["savedGroups"] == [{"match": "any", "ids": ["aftershock-chat-model-adapted"]}]
    assert body["description"].startswith(owner_tag("chat-model"))
    assert (body["coverage"], body["seed"], body["hashVersion"]) == (0.1, rule["seed"], 2)
    assert rest_value({"model": "v1"}) == '{"model": "v1"}' and rest_value("v1") == "v1"
    with pytest.raises(ValueError, match="coverage"):
        RuleSpec("c", 1, 1.5)
