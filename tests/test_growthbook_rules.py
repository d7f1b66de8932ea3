"""Stages as GrowthBook rules, checked by evaluating users with the official SDK."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from growthbook import GrowthBook
from growthbook.core import gbhash

from rollout.growthbook_rules import build_stage_payload, is_rolled_back

SDK_CASES = Path(__file__).resolve().parents[2] / "shared" / "growthbook" / "sdk-cases.json"


def test_hash_matches_growthbooks_cross_sdk_vectors() -> None:
    # GrowthBook's cross-SDK test vectors (shared/growthbook/sdk-cases.json, section "hash").
    cases = json.loads(SDK_CASES.read_text())["hash"]
    assert len(cases) > 10
    for seed, value, version, expected in cases:
        got = gbhash(seed, value, version)
        assert got == expected if expected is None else got == pytest.approx(expected, abs=1e-4)


def serves_rollback(payload: dict, user: str) -> bool:
    gb = GrowthBook(
        attributes={"id": user}, features=payload["features"], saved_groups=payload["savedGroups"]
    )
    try:
        return gb.get_feature_value("chat-model", "new") == "old"
    finally:
        gb.destroy()


def test_every_stage_serves_exactly_the_planned_users_and_steps_are_nested() -> None:
    rng = np.random.default_rng(1)
    users = [f"u{i:05d}" for i in range(10_000)]
    labels = rng.choice(["unadapted", "partial", "adapted"], len(users), p=[0.5, 0.3, 0.2])
    cohorts = {
        c: [u for u, label in zip(users, labels, strict=True) if label == c]
        for c in ("unadapted", "partial", "adapted")
    }
    cohort_of = dict(zip(users, labels, strict=True))
    stages = [
        {"unadapted": 0.25},
        {"unadapted": 1.0, "partial": 0.1},
        {"unadapted": 1.0, "partial": 0.5, "adapted": 0.05},
        {"unadapted": 1.0, "partial": 1.0, "adapted": 0.25},
        {"unadapted": 1.0, "partial": 1.0, "adapted": 1.0},
    ]
    before: set[str] = set()
    for coverage in stages:
        payload = build_stage_payload(
            "chat-model",
            default_value="new",
            rollback_value="old",
            cohorts=cohorts,
            coverage=coverage,
        )
        served = {u for u in users if serves_rollback(payload, u)}
        planned = {
            u
            for u in users
            if is_rolled_back("chat-model", cohort_of[u], u, coverage.get(cohort_of[u], 0))
        }
        assert served == planned
        assert before <= served  # nested: nobody goes back to the new model
        for cohort, share in coverage.items():
            members = cohorts[cohort]
            got = sum(u in served for u in members) / len(members)
            assert got == pytest.approx(share, abs=0.03)
        before = served
    assert before == set(users)  # the last stage rolls everybody back


def test_rules_carry_growthbooks_partial_rollout_fields() -> None:
    payload = build_stage_payload(
        "chat-model",
        default_value="new",
        rollback_value="old",
        cohorts={"adapted": ["a", "b"]},
        coverage={"adapted": 0.1},
    )
    [rule] = payload["features"]["chat-model"]["rules"]
    assert rule["condition"] == {"id": {"$inGroup": "aftershock-chat-model-adapted"}}
    assert (rule["coverage"], rule["hashAttribute"], rule["hashVersion"]) == (0.1, "id", 2)
    assert payload["savedGroups"] == {"aftershock-chat-model-adapted": ["a", "b"]}
    with pytest.raises(ValueError, match="coverage"):
        build_stage_payload(
            "f", default_value=1, rollback_value=0, cohorts={"c": []}, coverage={"c": 1.5}
        )
