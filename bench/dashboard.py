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

from analytics.settings import get_settings
from bench.data import load_planned_rollback

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = {
    "overview": "rollout/dashboard/overview.py",
    "drift": "rollout/dashboard/drift.py",
    "style": "rollout/dashboard/style.py",
    "planner": "rollout/dashboard/planner.py",
    "ramp": "rollout/dashboard/ramp.py",
    "report": "rollout/dashboard/weekly_report.py",
}


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
    load_planned_rollback(url, interactions, exposures)
    os.environ["AFTERSHOCK_DATABASE_URL"] = url
    get_settings.cache_clear()
    print(json.dumps(render_times()))


if __name__ == "__main__":
    main()
