"""Every dashboard page renders on a demo database, and shows the numbers stored in the
analysis document (analysis.json) and the plan document (plan.json) that the CLI and the API
show; the planner's what-ifs store nothing and "Save plan" stores what `aftershock plan`
would."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
import streamlit as st
from sqlmodel import Session, col, select
from streamlit.testing.v1 import AppTest

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import run_analysis
from analytics.db import get_engine
from analytics.demo import DemoConfig
from analytics.models import Interaction
from analytics.settings import get_settings
from analytics.store import load_analysis_users, load_latest_analysis, save_analysis
from rollout.store import list_plans, load_plan, load_plan_events
from tests.databases import DemoDatabases
from tests.demo_data import DASHBOARD_DEMO, load_demo

APP = str(Path(__file__).resolve().parents[1] / "app.py")
EXPERIMENT = "chat-model-upgrade"
PAGES = ("overview", "drift", "style", "planner", "ramp", "weekly_report")


@dataclass(frozen=True)
class Demo:
    url: str
    analysis: dict[str, Any]  # analysis.json as stored
    plan_id: int
    plan: dict[str, Any]  # plan.json as stored


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, demo_databases: DemoDatabases) -> Demo:
    """The demo (600 users, seed 31), analysed, planned with the CLI's defaults and with its
    first stage recorded: a copy of the session's, shared by this module's tests."""
    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'dashboard.db'}"
    facts = demo_databases.restore(DASHBOARD_DEMO, get_engine(url)).facts
    return Demo(url, facts["analysis"], facts["plan_id"], facts["plan"])


def _use(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", url)
    get_settings.cache_clear()
    st.cache_data.clear()  # the loaders' caches live in this process across app runs
    st.cache_resource.clear()


@pytest.fixture
def dashboard(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    _use(demo.url, monkeypatch)
    yield demo
    get_settings.cache_clear()


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    _use(url, monkeypatch)
    yield url
    get_settings.cache_clear()


def open_page(page: str = "overview") -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60).run()
    if page != "overview":
        app.switch_page(f"rollout/dashboard/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def metrics(app: AppTest) -> dict[str, tuple[str, str | None]]:
    return {m.label: (m.value, m.delta) for m in app.metric}


def button(app: AppTest, label: str) -> Any:
    return next(b for b in app.button if b.label == label)


def chart_data(chart: Any) -> list[pd.DataFrame]:
    """The data sets of an Altair chart as the page sent them."""
    return [pa.ipc.open_stream(d.data.data).read_pandas() for d in chart.proto.datasets]


def engine_of(demo: Demo) -> sa.Engine:
    return get_engine(demo.url)


def latest_plan(demo: Demo) -> Any:
    return next(p for p in list_plans(engine_of(demo)) if p.experiment_id == EXPERIMENT)


@pytest.mark.parametrize("page", PAGES)
def test_an_empty_database_says_what_to_do(database: str, page: str) -> None:
    app = open_page(page)
    assert not app.error
    assert "aftershock ingest" in app.info[0].value
    assert "aftershock analyze --experiment" in app.info[0].value


def test_an_aftershock_error_is_one_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _use("mysql://somewhere/db", monkeypatch)
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert len(app.error) == 1
    assert "unsupported scheme" in app.error[0].value
    get_settings.cache_clear()


def test_without_a_plan_the_pages_say_how_to_make_one(database: str, tmp_path: Path) -> None:
    engine = get_engine(database)
    load_demo(engine, tmp_path, DemoConfig(n_users=300, seed=3))
    save_analysis(engine, run_analysis(engine, AnalysisParams(EXPERIMENT)))
    hint = f"aftershock plan --experiment {EXPERIMENT} --feature chat-model"
    overview = open_page()
    assert metrics(overview)["Rollback progress"][0] == "no plan"
    assert hint in overview.info[0].value
    assert hint in open_page("ramp").info[0].value


def test_overview_shows_the_stored_figures(dashboard: Demo) -> None:
    app = open_page()
    shown = metrics(app)
    analysis = dashboard.analysis

    labels = analysis["adaptation"]["labels"]
    scored = labels["adapted"] + labels["partial"] + labels["unadapted"]
    assert shown["Treated users adapted"][0] == f"{labels['adapted'] / scored:.0%}"
    assert (
        shown["Adaptation half-life"][0] == f"{analysis['adaptation']['half_life_days']:.1f} days"
    )
    assert shown["Sample ratio"] == ("ok", f"p = {analysis['srm']['p_value']:.3g}")
    significant = {r["metric"] for r in analysis["behavior_drift"] if r["significant"]}
    assert shown["Behaviour drift"] == (
        "found",
        f"{len(significant)} of {len(analysis['behavior_drift'])} metrics",
    )
    assert shown["Users analysed"][0] == f"{sum(analysis['users'].values()):,}"
    plan = latest_plan(dashboard)  # another test may have saved a newer one
    assert shown["Rollback progress"] == (
        f"{plan.current_stage + 1} / {len(plan.document['stages'])} stages",
        f"{plan.status} · plan {plan.id}",
    )
    summary = app.markdown[0].value
    assert f"{labels['adapted']:,} of the treated users" in summary
    assert f"Rollback plan {plan.id}" in summary


def test_drift_shows_the_stored_table_and_the_change_points(dashboard: Demo) -> None:
    app = open_page("drift")
    table = app.dataframe[0].value
    stored = dashboard.analysis["behavior_drift"]
    assert list(table["metric"]) == [r["metric"] for r in stored]
    for column in ("effect", "ci_low", "ci_high", "q_value"):
        assert list(table[column]) == pytest.approx([r[column] for r in stored], nan_ok=True)
    assert list(table["drift_began"].fillna("")) == [r["drift_began"] or "" for r in stored]

    # The default series is the most significant metric, with its change point as a rule.
    metric = app.selectbox(key="drift_metric")
    began = {r["metric"]: r["drift_began"] for r in stored}
    assert began[metric.value] is not None
    frames = chart_data(app.get("vega_lite_chart")[0])
    assert any(began[metric.value] in set(f.get("drift_began", [])) for f in frames)
    series = next(f for f in frames if metric.value in f.columns)
    assert set(series["variation"]) == {f"variation {v}" for v in dashboard.analysis["variations"]}
    quiet = next(r["metric"] for r in stored if r["drift_began"] is None)
    app = metric.select(quiet).run()
    assert not app.exception
    assert not any("drift_began" in f.columns for f in chart_data(app.get("vega_lite_chart")[0]))


def _prompts(demo: Demo, user: str, first: datetime) -> list[str]:
    """The user's last two prompts before first exposure and last two after, read here
    independently of the dashboard."""
    prompts = []
    with Session(engine_of(demo)) as session:
        for after in (False, True):
            when = (
                col(Interaction.timestamp) >= first if after else col(Interaction.timestamp) < first
            )
            rows = session.exec(
                select(Interaction.prompt)
                .where(Interaction.user_id == user, when)
                .order_by(col(Interaction.timestamp).desc())
                .limit(2)
            ).all()
            prompts += list(reversed(rows))
    return prompts


def test_style_shows_the_stored_shift_adaptation_and_prompts(dashboard: Demo) -> None:
    app = open_page("style")
    analysis = dashboard.analysis
    did = app.dataframe[0].value
    assert list(did["metric"]) == [r["metric"] for r in analysis["style_shift"]]
    assert list(did["did"]) == pytest.approx([r["did"] for r in analysis["style_shift"]])
    fit = analysis["adaptation"]["half_life"]
    shown = metrics(app)
    assert shown["Adaptation half-life"][0] == f"{fit['half_life_days']:.1f} days"
    assert shown["Plateau (adaptation score units)"][0] == f"{fit['amplitude']:.2f}"
    labels = app.dataframe[1].value
    for variation, counts in analysis["adaptation"]["labels_by_variation"].items():
        row = labels.loc[f"variation {variation}"]
        assert {k: int(row[k]) for k in counts} == counts
    assert len(app.get("vega_lite_chart")) == 3  # shift by days, scores, labels

    # Before/after prompts of the most adapted treated user, cut to 200 characters.
    user = app.selectbox(key="example_user").value
    run = load_latest_analysis(engine_of(dashboard), EXPERIMENT)
    assert run is not None and run.id is not None
    users = load_analysis_users(engine_of(dashboard), run.id).set_index("user_id")
    assert users.at[user, "variation"] != analysis["control"]
    expected = _prompts(dashboard, user, users.at[user, "first_exposure"].to_pydatetime())
    shown_texts = [t.value for t in app.text]
    assert len(shown_texts) == len(expected) == 4
    for text, prompt in zip(shown_texts, expected, strict=True):
        flat = " ".join(prompt.split())
        assert len(text) <= 200
        assert text == flat or (text.endswith("…") and flat.startswith(text[:-1]))

    app = app.toggle(key="hide_prompts").set_value(True).run()
    assert not app.exception
    assert not app.text  # no prompt text at all
    assert "text hidden" in " ".join(c.value for c in app.caption)


def test_planner_compares_strategies_as_stored_and_stores_nothing(dashboard: Demo) -> None:
    plans_before = len(list_plans(engine_of(dashboard)))
    app = open_page("planner")
    stored = dashboard.plan
    shown = metrics(app)
    for option in stored["options"]:
        label = option["strategy"] + (
            " (recommended)" if option["strategy"] == stored["strategy"] else ""
        )
        value, delta = shown[label]
        assert value == f"{option['expected_disrupted_users']:,.1f}"
        assert delta.startswith(f"{option['stages']} stage")
        assert delta.endswith(f"{option['duration_days']:.1f} days")
    stages = app.dataframe[0].value
    assert list(stages["users"]) == [s["users"] for s in stored["stages"]]
    assert list(stages["coverage"]) == pytest.approx([s["coverage"] for s in stored["stages"]])
    assert list(stages["expected_disrupted_users"]) == pytest.approx(
        [s["expected_disrupted_users"] for s in stored["stages"]]
    )
    # The GrowthBook preview cuts saved-group member lists.
    payload = app.json[0].value
    preview = json.loads(payload) if isinstance(payload, str) else payload
    for members in preview["savedGroups"].values():
        assert len(members) <= 6
        assert str(members[-1]).endswith("more") or len(members) <= 5

    # A what-if (a smaller step cap) changes the plan and stores nothing.
    app.number_input(key="max_step_share").set_value(0.25)
    app = button(app, "Compute what-if").click().run()
    assert not app.exception
    assert len(app.dataframe[0].value) > len(stored["stages"])
    assert len(list_plans(engine_of(dashboard))) == plans_before


def test_save_plan_stores_what_the_cli_would(dashboard: Demo) -> None:
    app = open_page("planner")
    plans_before = {p.id for p in list_plans(engine_of(dashboard))}
    app = button(app, "Save plan").click().run()
    assert not app.exception
    [saved] = {p.id for p in list_plans(engine_of(dashboard))} - plans_before
    assert f"Saved plan {saved}" in app.success[-1].value
    plan = load_plan(engine_of(dashboard), saved)
    assert plan is not None and plan.status == "draft"
    assert plan.document["options"] == dashboard.plan["options"]
    assert [e.actor for e in load_plan_events(engine_of(dashboard), saved)] == ["dashboard"]


def test_ramp_shows_the_stage_evaluates_guardrails_and_audits(dashboard: Demo) -> None:
    app = open_page("ramp")
    app = app.selectbox(key="ramp_plan").select(dashboard.plan_id).run()
    assert not app.exception
    plan = load_plan(engine_of(dashboard), dashboard.plan_id)
    assert plan is not None
    shown = metrics(app)
    stages = len(dashboard.plan["stages"])
    assert shown["Status"][0] == str(plan.status)
    stage = dashboard.plan["stages"][plan.current_stage]
    assert shown["Current stage"] == (
        f"{plan.current_stage} of 0–{stages - 1}",
        f"{stage['kind']}: {stage['cohort']} to {stage['coverage']:.0%}",
    )
    assert shown["Hold until"][1] == f"UTC · {plan.current_stage + 1} / {stages} stages applied"
    events = load_plan_events(engine_of(dashboard), dashboard.plan_id)
    trail = app.dataframe[-1].value
    assert len(trail) == len(events)
    assert list(trail["action"]) == [e.action for e in reversed(events)]

    app = button(app, "Evaluate the guardrails now").click().run()
    assert not app.exception
    after = load_plan_events(engine_of(dashboard), dashboard.plan_id)
    assert len(after) == len(events) + 1
    decision = after[-1]
    assert (decision.action, decision.actor) == ("guardrails", "dashboard")
    said = " ".join(m.value for m in (*app.info, *app.success, *app.error))
    assert f"**{decision.details['action'].upper()}** for stage {plan.current_stage}" in said
    assert len(app.dataframe[-1].value) == len(after)


def test_weekly_report_previews_and_offers_downloads(dashboard: Demo) -> None:
    try:
        report = importlib.import_module("rollout.report")
    except ImportError as error:
        pytest.skip(f"rollout.report cannot be imported yet: {error}")
    app = open_page("weekly_report")
    week = app.selectbox(key="report_week")
    assert week.options  # the experiment's weeks, newest first
    app = button(app, "Build report").click().run()
    assert not app.exception
    built = report.build_weekly_report(engine_of(dashboard), EXPERIMENT, week.value)
    preview = " ".join(m.value for m in app.markdown)
    assert built.title in preview
    assert built.headline.split(".")[0] in preview
