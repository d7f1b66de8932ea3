"""Regenerate the golden weekly report ``tests/reference/weekly_report_2026-W44.md``.

Run from the repository root after a deliberate change of the report's content or wording
(then read the diff before committing it)::

    .venv/bin/python -m tests.reference.make_weekly_report

The data set: the seeded demo (600 users, seed 21) ingested into a fresh SQLite file and
analysed, a record-only rollback plan made on 2026-10-27 with the adaptation-aware strategy
chosen by hand (not the recommended option, so the report shows both), its stage 0 applied
and judged by the guardrails, then stage 1 applied and judged (hold), then stage 2 forced
past the guardrails by ``oncall-alice`` with a reason, all inside ISO week 2026-W44 and with
explicit times, so the report depends on no clock. ``tests/test_report.py`` builds the same
data with :func:`load_reference_data` and compares its Markdown with the file byte for byte.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlmodel import Session, col

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import run_analysis
from analytics.db import ensure_schema, get_engine
from analytics.demo import DemoConfig
from analytics.store import save_analysis
from rollout.models import PlanEvent
from rollout.planner import Policy
from rollout.plans import create_plan
from rollout.ramp import advance_plan, apply_stage, evaluate_plan
from rollout.report import build_weekly_report, render_markdown
from rollout.store import load_plan
from tests.demo_data import load_demo

EXPERIMENT = "chat-model-upgrade"
FEATURE = "chat-model"
WEEK = "2026-W44"  # Monday 2026-10-26 to Sunday 2026-11-01
DEMO = DemoConfig(n_users=600, seed=21)
GOLDEN = Path(__file__).with_name("weekly_report_2026-W44.md")
PLANNED_AT = datetime(2026, 10, 27, 9, 0, tzinfo=UTC)
# (stage, applied at, judged by the guardrails at)
STEPS = (
    (0, datetime(2026, 10, 27, 10, 0, tzinfo=UTC), datetime(2026, 10, 28, 12, 0, tzinfo=UTC)),
    (1, datetime(2026, 10, 28, 13, 0, tzinfo=UTC), datetime(2026, 10, 28, 15, 0, tzinfo=UTC)),
)
# The next stage, forced past the guardrails' hold: when, by whom, why.
FORCED_AT = datetime(2026, 10, 28, 16, 0, tzinfo=UTC)
FORCED_BY = "oncall-alice"
FORCED_REASON = "the launch freeze starts on Friday; partly adapted users cannot wait for the hold"
T = TypeVar("T")


def dated(engine: sa.Engine, moment: datetime, step: Callable[[], T]) -> T:
    """Run a plan step and date the events it records ``moment``; return what it returns.

    ``rollout.plans`` stamps ``plan_events.at`` with the wall clock even when given ``now``;
    the report places events in weeks by ``at``, so the fixture sets it to the step's time.
    """
    with engine.connect() as connection:
        last = connection.execute(sa.select(sa.func.max(col(PlanEvent.id)))).scalar() or 0
    result = step()
    with Session(engine) as session:
        session.execute(sa.update(PlanEvent).where(col(PlanEvent.id) > last).values(at=moment))
        session.commit()
    return result


def load_reference_data(engine: sa.Engine, folder: Path) -> int:
    """Ingest and analyse the demo, then plan and take three rollback stages in 2026-W44
    (the third forced); return the plan's id."""
    load_demo(engine, folder, DEMO)
    save_analysis(engine, run_analysis(engine, AnalysisParams(EXPERIMENT)))
    plan = partial(
        create_plan,
        engine,
        experiment_id=EXPERIMENT,
        feature_key=FEATURE,
        policy=Policy(),
        rollback_value="previous-model",
        current_value="new-model",
        strategy="adaptation_aware",
        mode="record_only",
        now=PLANNED_AT,
    )
    plan_id, _, _ = dated(engine, PLANNED_AT, plan)
    for stage, applied, judged in STEPS:
        dated(
            engine,
            applied,
            partial(
                apply_stage,
                engine,
                plan_id,
                stage,
                client=None,
                environments=["production"],
                now=applied,
            ),
        )
        dated(engine, judged, partial(evaluate_plan, engine, plan_id, now=judged))
    plan = load_plan(engine, plan_id)
    assert plan is not None
    dated(
        engine,
        FORCED_AT,
        partial(
            advance_plan,
            engine,
            plan_id,
            expected_version=plan.version,
            client=None,
            environments=["production"],
            actor=FORCED_BY,
            force=True,
            reason=FORCED_REASON,
            now=FORCED_AT,
        ),
    )
    return plan_id


def make_weekly_report() -> str:
    """The golden Markdown, built on a throwaway SQLite database."""
    with tempfile.TemporaryDirectory() as folder:
        engine = get_engine(f"sqlite:///{Path(folder) / 'aftershock.db'}")
        ensure_schema(engine)
        load_reference_data(engine, Path(folder))
        markdown = render_markdown(build_weekly_report(engine, EXPERIMENT, WEEK))
        engine.dispose()
        return markdown


if __name__ == "__main__":
    GOLDEN.write_text(make_weekly_report())
    sys.stdout.write(f"wrote {GOLDEN}\n")
