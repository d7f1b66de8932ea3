"""A plan is made from the right analysis: the latest of all the data (not an ``--as-of``
snapshot) unless one is named, and never one whose control arm has no users."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import run_analysis
from analytics.analysis.user_periods import PeriodParams
from analytics.demo import DemoConfig
from analytics.store import save_analysis
from rollout.errors import AnalysisNotFoundError, PlanError
from rollout.planner import Policy
from rollout.plans import create_plan, load_plan_analysis
from rollout.store import load_plan
from tests.demo_data import load_demo

EXPERIMENT = "chat-model-upgrade"
SNAPSHOT = datetime(2026, 10, 20, tzinfo=UTC)


@pytest.fixture
def analysed(engine: sa.Engine, tmp_path: Path) -> tuple[int, int]:
    """A demo with a full analysis, then a newer one as of a past moment: (full, snapshot)."""
    load_demo(engine, tmp_path, DemoConfig(n_users=300, seed=5))
    full = save_analysis(engine, run_analysis(engine, AnalysisParams(EXPERIMENT)))
    as_of = AnalysisParams(EXPERIMENT, periods=PeriodParams(until=SNAPSHOT))
    snapshot = save_analysis(engine, run_analysis(engine, as_of))
    return full, snapshot


def test_the_latest_full_analysis_is_used_not_a_newer_snapshot(
    engine: sa.Engine, analysed: tuple[int, int]
) -> None:
    full, snapshot = analysed
    assert snapshot > full
    assert load_plan_analysis(engine, EXPERIMENT).id == full
    plan_id, _, _ = create_plan(
        engine,
        experiment_id=EXPERIMENT,
        feature_key="chat-model",
        policy=Policy(),
        rollback_value="old",
        current_value="new",
    )
    plan = load_plan(engine, plan_id)
    assert plan is not None and plan.analysis_run_id == full


def test_a_named_analysis_is_used(engine: sa.Engine, analysed: tuple[int, int]) -> None:
    _, snapshot = analysed
    assert load_plan_analysis(engine, EXPERIMENT, snapshot).id == snapshot
    with pytest.raises(AnalysisNotFoundError, match="no analysis 999"):
        load_plan_analysis(engine, EXPERIMENT, 999)
    with pytest.raises(AnalysisNotFoundError):
        load_plan_analysis(engine, "another-experiment", snapshot)


def test_an_analysis_without_control_users_is_refused(
    engine: sa.Engine, analysed: tuple[int, int]
) -> None:
    # analyze refuses such a control now (tests/test_analysis_refusals.py); one stored by an
    # earlier version is still never planned from.
    result = run_analysis(engine, AnalysisParams(EXPERIMENT))
    document = result.document()
    stored = replace(result, cohorts=replace(result.cohorts, control="7"))
    assert document.control == "0" and stored.document().control == "7"
    wrong = save_analysis(engine, stored)
    with pytest.raises(PlanError, match=r"no users in its control arm '7'"):
        load_plan_analysis(engine, EXPERIMENT)
    with pytest.raises(PlanError, match=r"no users in its control arm '7'"):
        load_plan_analysis(engine, EXPERIMENT, wrong)


def test_only_snapshots_means_no_analysis_to_plan_from(engine: sa.Engine, tmp_path: Path) -> None:
    load_demo(engine, tmp_path, DemoConfig(n_users=300, seed=5))
    as_of = AnalysisParams(EXPERIMENT, periods=PeriodParams(until=SNAPSHOT))
    snapshot = save_analysis(engine, run_analysis(engine, as_of))
    with pytest.raises(PlanError, match="no stored analysis of all its data"):
        load_plan_analysis(engine, EXPERIMENT)
    assert load_plan_analysis(engine, EXPERIMENT, snapshot).id == snapshot
