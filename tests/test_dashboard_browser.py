"""The dashboard end to end in a real browser: `streamlit run app.py` on a demo database,
driven by Playwright in headless Chromium; the overview and the planner show the stored
figures. Screenshots are saved under the test's tmp_path.

Every figure is read with Playwright's ``expect(...).to_have_text(...)``, which waits until
the card shows it: Streamlit draws a page's cards before it fills them in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from analytics.db import get_engine
from analytics.features.metrics import describe_p
from rollout.browser import find_chromium
from rollout.store import load_plan
from tests.databases import DemoDatabases
from tests.demo_data import DASHBOARD_DEMO
from tools.screenshots import INSTALL_HINT, chromium, metric_value, open_page, serve

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 60_000  # a busy machine may take this long to render a page


def shows(page: Page, label: str, value: str) -> None:
    """Wait until the metric card ``label`` shows exactly ``value``; fail after TIMEOUT_MS."""
    from playwright.sync_api import expect

    expect(metric_value(page, label)).to_have_text(value, timeout=TIMEOUT_MS)


def test_overview_and_planner_show_the_stored_figures_in_a_browser(
    tmp_path: Path, demo_databases: DemoDatabases
) -> None:
    from playwright.sync_api import expect

    executable = find_chromium()
    if executable is None:
        pytest.skip(INSTALL_HINT)
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    engine = get_engine(url)
    # The demo (600 users, seed 31), analysed, planned and its first stage recorded.
    facts = demo_databases.restore(DASHBOARD_DEMO, engine).facts
    analysis, plan_id, plan = facts["analysis"], facts["plan_id"], facts["plan"]

    with (
        serve({"AFTERSHOCK_DATABASE_URL": url}, log=tmp_path / "streamlit.log") as base,
        chromium(executable) as browser,
    ):
        overview = open_page(browser, base)
        labels = analysis["adaptation"]["labels"]
        scored = labels["adapted"] + labels["partial"] + labels["unadapted"]
        shows(overview, "Treated users adapted", f"{labels['adapted'] / scored:.0%}")
        half_life = analysis["adaptation"]["half_life_days"]
        shows(overview, "Adaptation half-life", f"{half_life:.1f} days")
        shows(overview, "Sample ratio", "ok" if analysis["srm"]["ok"] else "MISMATCH")
        expect(overview.locator("body")).to_contain_text(
            describe_p(analysis["srm"]["p_value"]), timeout=TIMEOUT_MS
        )
        shows(overview, "Rollback progress", f"1 / {len(plan['stages'])} stages")
        overview.screenshot(path=str(tmp_path / "overview.png"))

        planner = open_page(browser, f"{base}/planner")
        chosen = next(o for o in plan["options"] if o["name"] == plan["option"])
        shows(
            planner,
            f"{plan['strategy']} (recommended)",
            f"{chosen['expected_second_disruptions']:,.0f}",
        )
        expect(planner.locator("body")).to_contain_text(
            f"{plan['policy']['exposure_day_cost']:,.0f} exposed user-days", timeout=TIMEOUT_MS
        )
        expect(planner.locator('[data-testid="stVegaLiteChart"]').first).to_be_visible(
            timeout=TIMEOUT_MS
        )
        planner.screenshot(path=str(tmp_path / "planner.png"))
        # Nothing was stored by looking.
        assert load_plan(engine, plan_id + 1) is None

    assert (tmp_path / "overview.png").stat().st_size > 10_000
    assert (tmp_path / "planner.png").stat().st_size > 10_000
