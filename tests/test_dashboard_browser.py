"""The dashboard end to end in a real browser: `streamlit run app.py` on a demo database,
driven by Playwright in headless Chromium; the overview and the planner show the stored
figures. Screenshots are saved under the test's tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.analysis.pipeline import AnalysisParams, analysis_document, run_analysis
from analytics.db import ensure_schema, get_engine
from analytics.demo import DemoConfig
from analytics.store import save_analysis
from rollout.planner import Policy
from rollout.plans import apply_stage, create_plan
from rollout.store import load_plan_document
from tests.test_pipeline import load_demo
from tools.screenshots import (
    INSTALL_HINT,
    chromium,
    find_chromium,
    metrics,
    open_page,
    serve,
)

EXPERIMENT = "chat-model-upgrade"


def test_overview_and_planner_show_the_stored_figures_in_a_browser(tmp_path: Path) -> None:
    executable = find_chromium()
    if executable is None:
        pytest.skip(INSTALL_HINT)
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    engine = get_engine(url)
    ensure_schema(engine)
    load_demo(engine, tmp_path / "demo", DemoConfig(n_users=600, seed=31))
    result = run_analysis(engine, AnalysisParams(EXPERIMENT))
    save_analysis(engine, result)
    analysis = analysis_document(result)
    plan_id, _, _ = create_plan(
        engine,
        experiment_id=EXPERIMENT,
        feature_key="chat-model",
        policy=Policy(),
        rollback_value="previous-model",
        current_value="new-model",
    )
    apply_stage(engine, plan_id, 0, client=None, environments=["production"])
    plan = load_plan_document(engine, plan_id)
    assert plan is not None

    with (
        serve({"AFTERSHOCK_DATABASE_URL": url}, log=tmp_path / "streamlit.log") as base,
        chromium(executable) as browser,
    ):
        overview = open_page(browser, base)
        overview.screenshot(path=str(tmp_path / "overview.png"))
        shown = metrics(overview)
        labels = analysis["adaptation"]["labels"]
        scored = labels["adapted"] + labels["partial"] + labels["unadapted"]
        assert shown["Treated users adapted"] == f"{labels['adapted'] / scored:.0%}"
        half_life = analysis["adaptation"]["half_life_days"]
        assert shown["Adaptation half-life"] == f"{half_life:.1f} days"
        assert shown["Sample ratio"] == ("ok" if analysis["srm"]["ok"] else "MISMATCH")
        assert f"p = {analysis['srm']['p_value']:.3g}" in overview.inner_text("body")
        assert shown["Rollback progress"] == f"1 / {len(plan['stages'])} stages"

        planner = open_page(browser, f"{base}/planner")
        planner.screenshot(path=str(tmp_path / "planner.png"))
        shown = metrics(planner)
        for option in plan["options"]:
            label = option["strategy"] + (
                " (recommended)" if option["strategy"] == plan["strategy"] else ""
            )
            assert shown[label] == f"{option['expected_disrupted_users']:,.1f}"
        # Nothing was stored by looking.
        assert load_plan_document(engine, plan_id + 1) is None

    assert (tmp_path / "overview.png").stat().st_size > 10_000
    assert (tmp_path / "planner.png").stat().st_size > 10_000
