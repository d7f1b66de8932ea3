"""The dashboard's report page renders its downloads when they are asked for, not before it
shows: the page is the preview, and the HTML's charts alone take about a second."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import streamlit as st
from streamlit.testing.v1 import AppTest

import rollout.report.render as render
from analytics.db import get_engine
from analytics.settings import get_settings
from rollout.browser import INSTALL_HINT, find_chromium
from rollout.report import build_weekly_report, report_bytes
from tests.databases import DemoDatabases
from tests.demo_data import DASHBOARD_DEMO, EXPERIMENT

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGE = "rollout/dashboard/weekly_report.py"


@pytest.fixture
def demo_url(
    tmp_path: Path, demo_databases: DemoDatabases, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The dashboard's demo (600 users, analysed and planned), for the app of this process."""
    url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    demo_databases.restore(DASHBOARD_DEMO, get_engine(url))
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", url)
    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()
    yield url
    get_settings.cache_clear()


def test_the_page_shows_the_report_without_rendering_its_files(
    demo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("a download was rendered before it was asked for")

    for name in ("render_html", "render_csv_zip"):
        monkeypatch.setattr(render, name, refuse)
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.switch_page(PAGE).run()
    assert not app.exception, [e.value for e in app.exception]
    buttons = app.get("download_button")
    assert [b.proto.label for b in buttons] == [
        "Download HTML",
        "Download Markdown",
        "Download CSV (zip)",
    ]
    assert all(b.proto.deferred_file_id and not b.proto.url for b in buttons)


@pytest.mark.browser
@pytest.mark.slow
def test_a_download_is_the_report_file(demo_url: str, tmp_path: Path) -> None:
    from tools.screenshots import chromium, open_page, serve

    executable = find_chromium()
    if executable is None:
        pytest.skip(INSTALL_HINT)
    engine: sa.Engine = get_engine(demo_url)
    with (
        serve({"AFTERSHOCK_DATABASE_URL": demo_url}, log=tmp_path / "streamlit.log") as base,
        chromium(executable) as browser,
    ):
        page = open_page(browser, f"{base}/report")
        page.get_by_text("Download Markdown").wait_for(timeout=60_000)
        files = {}
        for fmt, label in (("md", "Markdown"), ("csv", "CSV (zip)"), ("html", "HTML")):
            with page.expect_download(timeout=60_000) as download:
                page.get_by_text(f"Download {label}").click()
            target = tmp_path / download.value.suggested_filename
            download.value.save_as(target)
            files[fmt] = target
    week = files["md"].stem.removeprefix(f"{EXPERIMENT}-")
    built = build_weekly_report(engine, EXPERIMENT, week)
    for fmt, path in files.items():
        assert path.name == f"{EXPERIMENT}-{week}.{'zip' if fmt == 'csv' else fmt}"
        assert path.read_bytes() == report_bytes(built, fmt)[0], fmt
