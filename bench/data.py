"""Benchmark inputs, generated at run time from the seeded demo generator and cached on disk."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.csv as pa_csv

from analytics.demo import DemoConfig, generate_demo

CACHE = Path(__file__).parent / "results"
INTERACTIONS_PER_USER = 18.5  # what the demo generator yields on average


def demo_csvs(rows: int, seed: int = 11) -> tuple[Path, Path]:
    """CSVs of exactly ``rows`` demo interactions (prompts ~30 words, responses ~120) and of
    the exposures of their experiment: (interactions, exposures)."""
    interactions = CACHE / f"interactions-{rows}-{seed}.csv"
    exposures = CACHE / f"exposures-{rows}-{seed}.csv"
    if interactions.exists() and exposures.exists():
        return interactions, exposures
    CACHE.mkdir(parents=True, exist_ok=True)
    users = math.ceil(rows / INTERACTIONS_PER_USER * 1.05)
    data = generate_demo(DemoConfig(n_users=users, seed=seed))
    if data.interactions.num_rows < rows:
        raise RuntimeError(f"the demo made {data.interactions.num_rows} rows, fewer than {rows}")
    for path, table in (
        (interactions, data.interactions.slice(0, rows)),
        (exposures, data.exposures),
    ):
        partial = path.with_suffix(".partial")
        pa_csv.write_csv(table, partial)
        partial.rename(path)
    return interactions, exposures


def load_planned_rollback(url: str, interactions: Path, exposures: Path) -> int:
    """Into the empty database at ``url``: the logs, an analysis of the demo experiment, and
    its adaptation-aware rollback plan with two stages applied; return the plan's id."""
    from analytics.analysis.params import AnalysisParams
    from analytics.analysis.pipeline import run_analysis
    from analytics.db import ensure_schema, get_engine
    from analytics.ingest.runner import ingest_file
    from analytics.models import IngestKind
    from analytics.store import save_analysis
    from rollout.planner import Policy
    from rollout.plans import create_plan
    from rollout.ramp import apply_stage

    engine = get_engine(url)
    ensure_schema(engine)
    rejects = interactions.parent / "rejects"
    ingest_file(exposures, IngestKind.exposures, engine=engine, rejects_dir=rejects)
    ingest_file(interactions, IngestKind.interactions, engine=engine, rejects_dir=rejects)
    save_analysis(engine, run_analysis(engine, AnalysisParams("chat-model-upgrade")))
    plan_id, _, _ = create_plan(
        engine,
        experiment_id="chat-model-upgrade",
        feature_key="chat-model",
        policy=Policy(),
        rollback_value="previous-model",
        current_value="new-model",
        strategy="adaptation_aware",
    )
    for stage in (0, 1):
        apply_stage(engine, plan_id, stage, client=None, environments=["production"])
    return plan_id
