"""A simulated rollback, stage by stage: after each stage is applied, the users' next days of
logs are generated from what that stage serves them, ingested, and the guardrails decide.

With a second disruption planted among the adapted users (rolled back, they complain, retry
and push back more), the plan pauses at the first stage that rolls adapted users back; with
none, every stage advances.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from analytics.ingest.runner import ingest_file
from analytics.models import IngestKind
from rollout.documents import PlanDocument
from rollout.growthbook.rules import is_rolled_back
from rollout.planner import Policy, choose, plan_document, plan_rollback
from rollout.ramp import apply_stage, evaluate_plan
from rollout.replans import replan_plan
from rollout.store import load_plan, load_plan_events, save_plan

FEATURE = "chat-model"
START = datetime(2026, 11, 16, tzinfo=UTC)
LABELS = {"unadapted": 0.4, "partial": 0.2, "adapted": 0.4}
BASE = {"complaint": 0.04, "retry": 0.08, "pushback": 0.10}
DISRUPTED = {"complaint": 0.20, "retry": 0.25, "pushback": 0.35}
PROMPTS = ("Could you summarise this report for me?", "That's wrong, are you sure about it?")


class Population:
    """Treated users with a label, a daily activity and a seeded stream of interactions."""

    def __init__(self, n: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.ids = np.array([f"user-{seed}-{i:05d}" for i in range(n)])
        self.labels = self.rng.choice(list(LABELS), n, p=list(LABELS.values()))
        self.activity = self.rng.uniform(0.3, 0.9, n)
        self.events = 0

    def baseline(self, days: int = 14) -> pd.DataFrame:
        """Per-user means over a pre-rollback window, for the planner's holds."""
        active = self.rng.random((len(self.ids), days)) < self.activity[:, None]
        turns = active * self.rng.integers(1, 4, active.shape)
        n = turns.sum(axis=1)
        frame = {"daily_active": active.mean(axis=1)}
        for metric, column in (
            ("complaint_rate", "complaint"),
            ("retry_rate", "retry"),
            ("pushback_rate", "pushback"),
        ):
            hits = self.rng.binomial(n, BASE[column])
            frame[metric] = np.where(n > 0, hits / np.maximum(n, 1), np.nan)
        feedback = self.rng.choice([-1, 0, 1], (len(self.ids), 3 * days), p=[0.1, 0.6, 0.3])
        frame["feedback_score"] = feedback.mean(axis=1)
        return pd.DataFrame(frame)

    def write_days(
        self, path: Path, start: datetime, days: int, served_old: np.ndarray, planted: bool
    ) -> None:
        """``days`` of interaction logs from ``start``, each user on what they are served."""
        disrupted = planted & served_old & (self.labels == "adapted")
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["event_id", "user_id", "timestamp", "prompt", "feedback", "complaint", "retry"]
            )
            for day in range(days):
                active = self.rng.random(len(self.ids)) < self.activity
                for user in np.flatnonzero(active):
                    rates = DISRUPTED if disrupted[user] else BASE
                    for _ in range(self.rng.integers(1, 4)):
                        self.events += 1
                        moment = start + timedelta(
                            days=day, seconds=float(self.rng.uniform(0, 86_000))
                        )
                        pushback = self.rng.random() < rates["pushback"]
                        writer.writerow(
                            [
                                f"evt-{self.events:08d}",
                                self.ids[user],
                                moment.isoformat(),
                                PROMPTS[int(pushback)],
                                int(self.rng.choice([-1, 0, 1], p=[0.1, 0.6, 0.3])),
                                int(self.rng.random() < rates["complaint"]),
                                int(self.rng.random() < rates["retry"]),
                            ]
                        )


def run_rollout(
    engine: sa.Engine, folder: Path, *, planted: bool, seed: int, stop_at: str | None = None
) -> tuple[int, list[tuple], pd.DataFrame]:
    """Apply every stage in turn, simulating the logs in between; return the plan's id and
    (stage, cohort, action, reasons) for each decision, stopping at the first pause (or after
    the first partial stage of the cohort ``stop_at``)."""
    population = Population(6000, seed)
    users = pd.DataFrame(
        {
            "user_id": population.ids,
            "adaptation_label": population.labels,
            "days_exposed": 20.0,
            "evidence": np.where(population.labels == "adapted", 0.45, 0.05),
            "n_post": 40,
        }
    ).join(population.baseline())
    plan = choose(
        plan_rollback(
            users,
            experiment_id="exp",
            feature_key=FEATURE,
            policy=Policy(max_hold_hours=96.0, exposure_day_cost=500.0),  # staged: exposure cheap
            rollback_value="old",
            current_value="new",
            as_of=START,
            created_at=START,
        ),
        "adaptation_aware",
    )
    plan_id = save_plan(
        engine, document=plan_document(plan), members=plan.members, analysis_run_id=None
    )
    cohort_of = {u: c for c, members in plan.members.items() for u in members}
    decisions = []
    now = START
    for stage in plan.chosen().stages:
        apply_stage(engine, plan_id, stage.index, client=None, environments=["production"], now=now)
        served_old = np.array(
            [
                is_rolled_back(FEATURE, u, stage.rollback.get(cohort_of[u], 0.0))
                for u in population.ids
            ]
        )
        days = max(1, int(np.ceil(stage.min_hold_hours / 24)))
        for _ in range(8):  # a stage without enough data holds: let a day more come in
            path = folder / f"stage-{stage.index}-{population.events}.csv"
            population.write_days(path, now, days, served_old, planted)
            ingest_file(path, IngestKind.interactions, engine=engine, rejects_dir=folder)
            now += timedelta(days=days)
            decision = evaluate_plan(engine, plan_id, now=now)
            if decision.action != "hold":
                break
            days = 1
        decisions.append((stage.index, stage.cohort, decision.action, decision.reasons))
        if decision.action != "advance" or (stop_at == stage.cohort and stage.coverage < 1):
            break
    return plan_id, decisions, users


@pytest.mark.slow
def test_a_planted_second_disruption_pauses_at_the_first_adapted_stage(
    engine: sa.Engine, tmp_path: Path
) -> None:
    _, decisions, _ = run_rollout(engine, tmp_path, planted=True, seed=11)
    *before, (_, cohort, action, reasons) = decisions
    assert action == "pause", decisions
    assert cohort == "adapted"
    assert all(a == "advance" and c != "adapted" for _, c, a, _ in before), decisions
    assert any("complaint_rate" in r or "retry_rate" in r for r in reasons), reasons


@pytest.mark.slow
def test_without_a_disruption_every_stage_advances(engine: sa.Engine, tmp_path: Path) -> None:
    _, decisions, _ = run_rollout(engine, tmp_path, planted=False, seed=12)
    assert [a for _, _, a, _ in decisions] == ["advance"] * len(decisions), decisions
    assert decisions[-1][1] == "adapted"  # it went all the way


@pytest.mark.slow
@pytest.mark.parametrize("planted", [True, False])
def test_a_replan_learns_the_disruption_a_stage_saw(
    engine: sa.Engine, tmp_path: Path, planted: bool
) -> None:
    """After the first adapted stage, the replan estimates the disruption among its moved
    users, keeps the stages applied, plans the rest again and audits it."""
    plan_id, decisions, users = run_rollout(
        engine, tmp_path, planted=planted, seed=13, stop_at="adapted"
    )
    stage, cohort, _, _ = decisions[-1]
    assert cohort == "adapted"
    plan = load_plan(engine, plan_id)
    assert plan is not None
    before = PlanDocument.from_json(plan.document)
    applied_at = plan.stage_applied_at
    assert applied_at is not None
    replan = replan_plan(
        engine,
        plan_id,
        expected_version=plan.version,
        actor="test",
        now=applied_at + timedelta(days=4),
        users=users,
    )
    seen = replan.observation
    assert seen.stage == stage and seen.observed_share is not None
    if planted:  # every adapted user moved is disrupted: far more than the risk planned
        assert seen.ci_low > seen.planned_share and seen.risk_scale > 1
    else:
        assert seen.ci_low <= 0 <= seen.ci_high
    after = PlanDocument.from_json(replan.document)
    assert after.revision == before.revision + 1
    assert [s.index for s in after.stages] == list(range(len(after.stages)))
    assert after.stages[: stage + 1] == before.stages[: stage + 1]
    assert after.stages[-1].serving["rollback"].get("adapted") == 1.0
    for fresh in after.stages[stage + 1 :]:  # users new to the experiment stay frozen
        described = [r["description"] for r in fresh.rest["rules"]]
        assert any(d.endswith(f"stage {fresh.index}, unexposed freeze") for d in described)
    assert after.stages[stage + 1].start_day >= before.stages[stage].start_day
    [event] = [e for e in load_plan_events(engine, plan_id) if e.action == "replan"]
    assert event.details["to_revision"] == 2 and event.details["observed"]["stage"] == stage
    assert load_plan(engine, plan_id).document["revision"] == 2  # type: ignore[union-attr]
