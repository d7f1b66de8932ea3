"""The demo data sets the tests load: ``load_demo`` generates, writes and ingests one, and the
recipes below name the demo databases several tests start from.

A recipe is built once per test session and backend (see ``tests/databases.py``); a test asks
for a fresh copy with the ``demo_databases`` fixture::

    demo = demo_databases.restore(MAKE_RUN_DEMO, engine)  # the test's database now holds it
    demo.truth  # the generator's ground truth (truth.csv), as load_demo returns it
    demo.facts  # what the recipe returned while building (JSON), e.g. the stored plan's id
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import analysis_document, run_analysis
from analytics.demo import DemoConfig, generate_demo, write_demo
from analytics.ingest.runner import ingest_file
from analytics.models import IngestKind
from analytics.store import save_analysis

EXPERIMENT = "chat-model-upgrade"


def load_demo(engine: sa.Engine, folder: Path, config: DemoConfig) -> pd.DataFrame:
    """Generate the demo of ``config`` into ``folder``, ingest it into ``engine``'s database
    (exposures, then interactions) and return its ground truth (``truth.csv``)."""
    paths = write_demo(generate_demo(config), folder)
    for kind in (IngestKind.exposures, IngestKind.interactions):
        ingest_file(paths[kind.value], kind, engine=engine, rejects_dir=folder / "rejects")
    return pd.read_csv(paths["truth"])


@dataclass(frozen=True)
class DemoRecipe:
    """A demo database: ``build(engine, folder)`` fills an empty, migrated database (files
    it writes go to ``folder``, the demo's ``truth.csv`` among them) and returns facts about
    what it stored, as JSON."""

    name: str  # a file and database name part: letters, digits, underscores
    build: Callable[[sa.Engine, Path], dict[str, Any]]


def _make_run(engine: sa.Engine, folder: Path) -> dict[str, Any]:
    load_demo(engine, folder, DemoConfig(n_users=3000, seed=7))
    save_analysis(engine, run_analysis(engine, AnalysisParams(EXPERIMENT)))
    return {}


def _dashboard(engine: sa.Engine, folder: Path) -> dict[str, Any]:
    from rollout.planner import Policy
    from rollout.plans import create_plan
    from rollout.ramp import apply_stage
    from rollout.store import load_plan

    load_demo(engine, folder, DemoConfig(n_users=600, seed=31))
    result = run_analysis(engine, AnalysisParams(EXPERIMENT))
    save_analysis(engine, result)
    plan_id, _, _ = create_plan(
        engine,
        experiment_id=EXPERIMENT,
        feature_key="chat-model",
        policy=Policy(),
        rollback_value="previous-model",
        current_value="new-model",
    )
    apply_stage(engine, plan_id, 0, client=None, environments=["production"])
    plan = load_plan(engine, plan_id)
    assert plan is not None
    return {
        "analysis": analysis_document(result).to_json(),
        "plan_id": plan_id,
        "plan": plan.document,
    }


def _weekly_report(engine: sa.Engine, folder: Path) -> dict[str, Any]:
    from tests.reference.make_weekly_report import load_reference_data

    return {"plan_id": load_reference_data(engine, folder)}


# The demo of `make run` (3,000 users, seed 7), ingested and analysed (the analysis stored).
MAKE_RUN_DEMO = DemoRecipe("make_run", _make_run)
# The dashboard's demo (600 users, seed 31), analysed, planned with the CLI's defaults and
# with the plan's first stage recorded. Facts: "analysis" (analysis.json as the analysis
# returned it), "plan_id" and "plan" (plan.json as stored).
DASHBOARD_DEMO = DemoRecipe("dashboard", _dashboard)
# The golden weekly report's data (tests/reference/make_weekly_report.py): the demo of 600
# users (seed 21), analysed, a record-only plan and three stages in 2026-W44, the third
# forced past the guardrails. Facts: "plan_id".
WEEKLY_REPORT_DEMO = DemoRecipe("weekly_report", _weekly_report)
