"""The dashboard renders the stored analysis with the same numbers as analysis.json."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from analytics.db import get_engine
from analytics.demo import DemoConfig
from analytics.pipeline import AnalysisParams, analysis_document, run_analysis
from analytics.settings import get_settings
from analytics.store import save_analysis
from tests.test_pipeline import load_demo

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", url)
    get_settings.cache_clear()
    st.cache_data.clear()  # the loaders' caches live in this process across app runs
    st.cache_resource.clear()
    yield url
    get_settings.cache_clear()


def test_empty_database_says_what_to_do(database: str) -> None:
    app = AppTest.from_file(APP, default_timeout=30).run()
    assert not app.exception
    assert "aftershock ingest" in app.info[0].value


def test_overview_shows_the_stored_figures(database: str, tmp_path: Path) -> None:
    engine = get_engine(database)
    load_demo(engine, tmp_path, DemoConfig(n_users=800, seed=2))
    result = run_analysis(engine, AnalysisParams("chat-model-upgrade"))
    save_analysis(engine, result)
    document = analysis_document(result)

    app = AppTest.from_file(APP, default_timeout=60).run()

    assert not app.exception
    metrics = {m.label: m.value for m in app.metric}
    labels = document["adaptation"]["labels"]
    scored = labels["adapted"] + labels["partial"] + labels["unadapted"]
    assert metrics["Treated users adapted"] == f"{labels['adapted'] / scored:.0%}"
    significant = sum(r["significant"] for r in document["behavior_drift"])
    assert metrics["Behaviour drift"] == f"{significant} metrics"
    assert metrics["Sample ratio"] == "ok"
    drift = app.dataframe[0].value
    assert list(drift["metric"]) == [r["metric"] for r in document["behavior_drift"]]
