"""``python -m bench.dashboard URL INTERACTIONS EXPOSURES``: seconds to render each dashboard
page on a database of the given logs once results are stored.

Loads the files into the empty database at URL, stores an analysis and a plan with two
stages applied, then renders every page with Streamlit's AppTest, caches cleared first (the
first visit after a start: the slowest a product manager waits). Prints one JSON line:
{page: seconds}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from analytics.db import ensure_schema, get_engine
from analytics.ingest import ingest_file
from analytics.models import IngestKind
from analytics.pipeline import AnalysisParams, run_analysis
from analytics.settings import get_settings
from analytics.store import save_analysis
from rollout.planner import Policy
from rollout.plans import apply_stage, create_plan

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = {
    "overview": "rollout/dashboard/overview.py",
    "drift": "rollout/dashboard/drift.py",
    "style": "rollout/dashboard/style.py",
    "planner": "rollout/dashboard/planner.py",
    "ramp": "rollout/dashboard/ramp.py",
    "report": "rollout/dashboard/weekly_report.py",
}


def prepare(url: str, interactions: Path, exposures: Path) -> None:
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


def render_times() -> dict[str, float]:
    AppTest.from_file(APP, default_timeout=120).run()  # imports: paid once per server start
    times = {}
    for name, page in PAGES.items():
        st.cache_data.clear()
        st.cache_resource.clear()
        app = AppTest.from_file(APP, default_timeout=120)
        start = time.perf_counter()
        app.run()  # the default page (overview), caches cold
        if name != "overview":
            st.cache_data.clear()
            st.cache_resource.clear()
            start = time.perf_counter()
            app.switch_page(page).run()
        times[name] = time.perf_counter() - start
        assert not app.exception, (name, app.exception)
    return times


def main() -> None:
    url, interactions, exposures = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    prepare(url, interactions, exposures)
    os.environ["AFTERSHOCK_DATABASE_URL"] = url
    get_settings.cache_clear()
    print(json.dumps(render_times()))


if __name__ == "__main__":
    main()
