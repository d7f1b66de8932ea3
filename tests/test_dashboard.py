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
from analytics.features.metrics import describe_p, metric_label, verdict
from analytics.models import Interaction
from analytics.settings import get_settings
from analytics.store import load_analysis_users, load_latest_analysis, save_analysis
from rollout.dashboard import ui
from rollout.documents import PlanDocument, PlanStage
from rollout.models import PlanEvent
from rollout.planner import Policy
from rollout.plans import create_plan
from rollout.ramp import advance_plan, apply_stage, evaluate_plan
from rollout.report.rollback import (
    format_detectable,
    format_regression,
    metric_words,
    visibility_advice,
)
from rollout.store import (
    list_forced_advances,
    list_plans,
    load_plan,
    load_plan_events,
    record_plan_event,
)
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
    assert shown["Sample ratio"] == ("ok", describe_p(analysis["srm"]["p_value"]))
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
    assert f"{labels['adapted']:,} of the {scored:,} treated users who could be scored" in summary
    assert f"Rollback plan {plan.id}" in summary
    # Every significant style metric is named, not only the first three.
    for row in analysis["style_shift"]:
        if row["significant"]:
            assert metric_label(row["metric"]) in summary
    # The next step names what to do and links to the page that does it.
    step = app.markdown[1].value
    assert f"Stage {plan.current_stage}" in step or f"Plan {plan.id}" in step
    assert "Ramp status" in [link.value for link in app.get("page_link")]


def test_drift_shows_the_stored_table_and_the_change_points(dashboard: Demo) -> None:
    app = open_page("drift")
    stored = dashboard.analysis["behavior_drift"]
    # First the table for the product manager: plain names, what it means for users.
    readable = app.dataframe[0].value
    assert list(readable["what"]) == [metric_label(r["metric"]) for r in stored]
    assert list(readable["for users"]) == [
        verdict(r["metric"], r["effect"], r["significant"]) for r in stored
    ]
    assert "worse for users" in set(readable["for users"])  # the demo's sycophantic model
    assert all(e.startswith("p ") for e in readable["evidence"])
    # Then, under "how this is computed", the analyst's table as stored.
    table = app.dataframe[1].value
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
    readable = app.dataframe[0].value
    assert list(readable["what"]) == [metric_label(r["metric"]) for r in analysis["style_shift"]]
    assert list(readable["clear change"]) == [
        "yes" if r["significant"] else "no" for r in analysis["style_shift"]
    ]
    did = app.dataframe[1].value  # the analyst's table, under "how this is computed"
    assert list(did["metric"]) == [r["metric"] for r in analysis["style_shift"]]
    assert list(did["did"]) == pytest.approx([r["did"] for r in analysis["style_shift"]])
    fit = analysis["adaptation"]["half_life"]
    shown = metrics(app)
    assert shown["Adaptation half-life"][0] == f"{fit['half_life_days']:.1f} days"
    treated = analysis["adaptation"]["labels"]
    scored = treated["adapted"] + treated["partial"] + treated["unadapted"]
    assert shown["Treated users adapted"][0] == f"{treated['adapted']:,} of {scored:,} scored"
    labels = app.dataframe[2].value
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


def _frame_with(frames: list[pd.DataFrame], column: str) -> pd.DataFrame:
    return next(f for f in frames if column in f.columns)


def test_planner_shows_the_choice_as_stored_and_stores_nothing(dashboard: Demo) -> None:
    plans_before = len(list_plans(engine_of(dashboard)))
    app = open_page("planner")
    stored = PlanDocument.from_json(dashboard.plan)  # made with the page's default policy

    # The options chart: every option at (exposed user-days, second disruptions), the
    # recommended one marked, the Pareto front drawn through the options on it.
    frames = chart_data(app.get("vega_lite_chart")[0])
    points = max((f for f in frames if "name" in f.columns), key=len).set_index("name")
    assert set(points.index) == {o.name for o in stored.options}
    for option in stored.options:
        shown = points.loc[option.name]
        assert shown["second_disruptions"] == pytest.approx(option.expected_second_disruptions)
        assert shown["exposed_user_days"] == pytest.approx(option.exposed_user_days)
        assert bool(shown["pareto"]) == option.pareto
        assert bool(shown["recommended"]) == option.recommended
    [marked] = [f for f in frames if "tag" in f.columns and "recommended" in set(f["tag"])]
    assert list(marked["name"]) == [stored.option]
    front = [f for f in frames if "name" in f.columns and len(f) < len(points)]
    if sum(o.pareto for o in stored.options) > 1:
        assert any(set(f["name"]) == {o.name for o in stored.options if o.pareto} for f in front)

    # The recommendation, its reason, and the exchange rate in plain words beside it.
    assert stored.reason in app.success[0].value
    rate = stored.policy["exposure_day_cost"]
    said = " ".join(m.value for m in app.markdown)
    assert f"**Exchange rate:** {rate:,.0f} exposed user-days" in said
    assert "count as one second disruption" in said
    shown = metrics(app)
    label = f"{stored.strategy} (recommended)"
    chosen = stored.chosen
    assert chosen is not None
    assert shown[label] == (
        f"{chosen.expected_second_disruptions:,.0f}",
        f"{chosen.exposed_user_days:,.0f} exposed user-days · {chosen.duration_days:.1f} days",
    )

    # The stages of the chosen option: when each starts, how much of its cohort is back, ...
    timeline = app.dataframe[0].value
    assert list(timeline["stage"]) == [s.index for s in stored.stages]
    assert list(timeline["starts on day"]) == pytest.approx([s.start_day for s in stored.stages])
    assert list(timeline["users moved so far"]) == [s.cumulative_users for s in stored.stages]
    assert list(timeline["share moved so far"]) == pytest.approx(
        [s.cumulative_coverage for s in stored.stages]
    )
    assert list(timeline["hold (h)"]) == pytest.approx([s.min_hold_hours for s in stored.stages])
    # ... and per guardrail, the smallest regression its test can detect.
    sensitivity = app.dataframe[1].value
    for spec in stored.stages[0].guardrails:
        column = (
            f"{metric_words(spec.metric)} (≤ {format_regression(spec.metric, spec.max_regression)})"
        )
        assert list(sensitivity[column]) == [
            format_detectable(s, spec.metric, tolerance_shown=True, short=True)
            for s in stored.stages
        ]

    # The GrowthBook payloads are in an expander, with saved-group member lists cut.
    [expander] = [e for e in app.expander if "GrowthBook" in e.label]
    assert expander.json and len(expander.json) == len(app.json)  # none shown inline
    payload = expander.json[0].value
    preview = json.loads(payload) if isinstance(payload, str) else payload
    for members in preview["savedGroups"].values():
        assert len(members) <= 6
        assert str(members[-1]).endswith("more") or len(members) <= 5

    # A what-if (another exchange rate) costs the options again and stores nothing.
    app.number_input(key="exposure_day_cost").set_value(100.0)
    app = button(app, "Compute what-if").click().run()
    assert not app.exception
    said = " ".join(m.value for m in app.markdown)
    assert "**Exchange rate:** 100 exposed user-days" in said
    points = max(
        (f for f in chart_data(app.get("vega_lite_chart")[0]) if "name" in f.columns), key=len
    )
    assert list(points["combined_cost"]) == pytest.approx(
        list(points["second_disruptions"] + points["exposed_user_days"] / 100.0), abs=0.02
    )
    assert len(list_plans(engine_of(dashboard))) == plans_before


def _stage(index: int, coverage: float, mdr: float | None) -> PlanStage:
    return PlanStage.from_json(
        {
            "index": index,
            "cohort": "adapted",
            "kind": "rollback",
            "coverage": coverage,
            "cumulative_coverage": coverage,
            "users": 100,
            "cumulative_users": int(200 * coverage),
            "start_day": 2.0 * index,
            "min_hold_hours": 48.0,
            "power": None,
            "guardrails": [
                {
                    "metric": "complaint_rate",
                    "max_regression": 0.02,
                    "min_detectable_regression": mdr,
                },
                {
                    "metric": "feedback_score",
                    "max_regression": 0.05,
                    "min_detectable_regression": mdr,
                },
            ],
        }
    )


def test_stages_whose_guardrails_cannot_see_the_tolerated_regression_are_flagged() -> None:
    stages = [_stage(0, 0.25, 0.031), _stage(1, 0.5, 0.012), _stage(2, 1.0, None)]
    table = ui.sensitivity_table(stages).set_index("stage")
    assert table.loc[0, "complaints (≤ 2.0 pts)"] == "3.1 pts ✗"
    assert table.loc[0, "feedback score (≤ 0.050)"] == "0.031"  # 0.031 <= 0.05: it sees it
    assert table.loc[1, "complaints (≤ 2.0 pts)"] == "1.2 pts"
    assert list(table["sees it"]) == ["no", "yes", "no test"]
    advice = visibility_advice(stages)
    assert advice is not None and advice.startswith("Stage 0 is too small or too short")
    assert "complaints (tolerated 2.0 pts, smallest detectable up to 3.1 pts)" in advice
    assert "fewer, larger steps" in advice and "longer max hold" in advice
    assert visibility_advice(stages[1:]) is None
    timeline = ui.stage_table(stages)
    assert list(timeline["users moved so far"]) == [50, 100, 200]
    assert list(timeline["starts on day"]) == [0.0, 2.0, 4.0]


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
    assert f"**Mode: live.** Plan {plan.id}: each stage is written to GrowthBook" in (
        app.info[0].value
    )
    shown = metrics(app)
    stages = len(dashboard.plan["stages"])
    assert shown["Status"][0] == str(plan.status)
    stage = dashboard.plan["stages"][plan.current_stage]
    assert shown["Current stage"] == (
        f"{plan.current_stage} of 0–{stages - 1}",
        f"{stage['kind']}: {stage['cohort']} to {stage['coverage']:.0%}",
    )
    assert shown["Hold until"][1] == f"{plan.current_stage + 1} / {stages} stages applied"
    assert shown["Hold until"][0].endswith(" UTC")  # the reader's zone (UTC in the test browser)
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
    # The summary at the top shows the decision just made, not the one before it.
    summary = app.dataframe[0].value
    row = summary[summary["plan"] == plan.id].iloc[0]
    assert row["latest guardrail decision"] == decision.details["action"]


@pytest.fixture
def forced(database: str, demo_databases: DemoDatabases) -> tuple[sa.Engine, int, int, str]:
    """A copy of the dashboard's demo with a second, record-only plan whose first held stage
    was forced past the guardrails by ``oncall-alice``, then replanned (revision 2) by
    ``ci-rollbacks``: (engine, plan id, forced stage, reason)."""
    engine = get_engine(database)
    demo_databases.restore(DASHBOARD_DEMO, engine)
    plan_id, document, _ = create_plan(
        engine,
        experiment_id=EXPERIMENT,
        feature_key="chat-model",
        policy=Policy(),
        rollback_value="previous-model",
        current_value="new-model",
        strategy="adaptation_aware",
        mode="record_only",
    )
    stages = len(document["stages"])
    reason = "the launch freeze starts on Friday; the cohort cannot wait for the hold"
    # The demo's own plan may still be in progress: this one takes over from it.
    apply_stage(engine, plan_id, 0, client=None, environments=["production"], supersede=True)
    for stage in range(1, stages):
        if evaluate_plan(engine, plan_id, record=False).action != "advance":
            plan = load_plan(engine, plan_id)
            assert plan is not None
            advance_plan(
                engine,
                plan_id,
                expected_version=plan.version,
                client=None,
                environments=["production"],
                actor="oncall-alice",
                force=True,
                reason=reason,
            )
            break
        apply_stage(engine, plan_id, stage, client=None, environments=["production"])
    else:
        pytest.fail(f"no stage of plan {plan_id} held: nothing to force")
    # A replan's event, as rollout.replans records it (made by hand: replanning needs logs
    # after the stage, which this demo does not have).
    record_plan_event(
        engine,
        PlanEvent(
            plan_id=plan_id,
            action="replan",
            stage=stage,
            actor="ci-rollbacks",
            details={
                "from_revision": 1,
                "to_revision": 2,
                "reason": "Stage 2 saw 31% of the moved users disrupted where the plan expected "
                "18%.",
                "observed": {"stage": stage, "observed_share": 0.31, "planned_share": 0.18},
            },
        ),
    )
    return engine, plan_id, stage, reason


def test_ramp_shows_record_only_forced_advances_and_versions(
    forced: tuple[sa.Engine, int, int, str],
) -> None:
    engine, plan_id, stage, reason = forced
    app = open_page("ramp")
    app = app.selectbox(key="ramp_plan").select(plan_id).run()
    assert not app.exception
    plans = app.dataframe[0].value.set_index("plan")
    assert plans.loc[plan_id, "mode"] == "record-only"
    assert plans.loc[plan_id - 1, "mode"] == "live"
    # The mode, before anything else: record-only plans never write GrowthBook.
    assert app.warning[0].value.startswith("**Mode: record-only.**")
    assert f"Plan {plan_id} never writes GrowthBook" in app.warning[0].value

    # The forced advance: as forced, with who and why (not as an ordinary apply).
    [advance] = list_forced_advances(engine, plan_id)
    said = " ".join(e.value for e in app.error)
    assert f"**Stage {stage} was forced** past the guardrails" in said
    assert f"the guardrails said **{advance.guardrails_action}**" in said
    assert "by **oncall-alice**" in said and f"Reason: {reason}" in said
    trail = app.dataframe[-1].value
    forced_rows = trail[trail["details"].str.contains("forced past the guardrails")]
    assert set(forced_rows["actor"]) == {"oncall-alice"}
    assert set(forced_rows["stage"]) == {stage}

    # The versions: revision 1 as made, then the replan.
    versions = app.dataframe[-2].value
    assert list(versions["revision"]) == [2, 1]
    assert list(versions["by"]) == ["ci-rollbacks", "cli"]
    assert versions["what"].iloc[0].startswith("Stage 2 saw 31% of the moved users disrupted")
    assert versions["what"].iloc[1] == "created"
    replans = trail[trail["action"] == "replan"]
    assert replans["details"].iloc[0].startswith("revision 1 to 2: Stage 2 saw 31%")


def test_weekly_report_previews_and_offers_downloads(dashboard: Demo) -> None:
    try:
        report = importlib.import_module("rollout.report")
    except ImportError as error:
        pytest.skip(f"rollout.report cannot be imported yet: {error}")
    app = open_page("weekly_report")
    assert not app.exception
    week = app.selectbox(key="report_week")
    assert week.options and week.value == week.options[0]  # the newest week, shown at once
    built = report.build_weekly_report(engine_of(dashboard), EXPERIMENT, week.value)
    preview = " ".join(m.value for m in app.markdown)
    assert built.title in preview
    assert built.headline.split(".")[0] in preview
