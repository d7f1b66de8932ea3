"""The weekly report: golden Markdown, self-contained HTML, the CSV zip, PDF and the command.

The golden file and the data it is made from come from ``tests/reference/
make_weekly_report.py`` (run it to regenerate the file after a deliberate change).
"""

from __future__ import annotations

import html
import io
import re
import shutil
import subprocess
import zipfile
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import analysis_document, run_analysis
from analytics.analysis.user_periods import PeriodParams
from analytics.demo import DemoConfig
from analytics.features.metrics import describe_p, metric_label, verdict
from analytics.store import data_end, load_latest_analysis, save_analysis
from rollout.documents import PlanOption, PlanStage
from rollout.report import (
    IsoWeek,
    ReportError,
    WeekError,
    WeeklyReport,
    build_weekly_report,
    format_number,
    parse_iso_week,
    render_csv_zip,
    render_html,
    render_markdown,
    render_pdf,
    report_bytes,
)
from rollout.report.model import PlanView
from rollout.report.render import OPTION_COLUMNS, STAGE_COLUMNS
from rollout.store import ForcedAdvance
from tests.databases import DemoDatabases
from tests.demo_data import WEEKLY_REPORT_DEMO, load_demo
from tests.reference.make_weekly_report import (
    DEMO,
    EXPERIMENT,
    FORCED_BY,
    FORCED_REASON,
    GOLDEN,
    WEEK,
)

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
# An inline <svg> may carry these namespace names: identifiers, never fetched.
NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
URL_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "action", "poster", "data", "background"}
EXTERNAL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
CSS_URL = re.compile(r"url\(\s*['\"]?\s*(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


@pytest.fixture
def reference(engine: sa.Engine, demo_databases: DemoDatabases) -> WeeklyReport:
    """The golden report's data (demo, analysis, a plan with two stages in the week: see
    ``load_reference_data``), a fresh copy of the session's in the test's database."""
    demo_databases.restore(WEEKLY_REPORT_DEMO, engine)
    return build_weekly_report(engine, EXPERIMENT, WEEK)


class _Page(HTMLParser):
    """What the tests read of an HTML page: tags, attributes, style text, table cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.styles: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        self.attributes += [(tag, name, value or "") for name, value in attrs]
        if tag == "table":
            self._table = values.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_style:
            self.styles.append(data)


def read_page(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def rows_by_key(table: list[list[str]]) -> dict[tuple[str, str], dict[str, str]]:
    """A parsed table's rows keyed by (metric, variation), cells by column name."""
    head, *rows = table
    return {(row[0], row[1]): dict(zip(head, row, strict=True)) for row in rows}


@SQLITE_ONLY
def test_markdown_equals_the_golden_file(reference: WeeklyReport) -> None:
    assert render_markdown(reference) == GOLDEN.read_text(), (
        "the weekly report changed: if on purpose, run "
        "`.venv/bin/python -m tests.reference.make_weekly_report` and review the diff"
    )


def test_html_is_self_contained_and_shows_the_analysis_numbers(
    reference: WeeklyReport, engine: sa.Engine
) -> None:
    text = render_html(reference)
    page = read_page(text)
    assert page.tags.count("svg") == 3  # the three charts, inline
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(page.tags)
    for tag, name, value in page.attributes:
        if name.lower() in URL_ATTRIBUTES:
            assert not EXTERNAL.match(value), (tag, name, value)
        assert not CSS_URL.search(value), (tag, name, value)
    assert not any(CSS_URL.search(style) for style in page.styles)
    # The only URL-looking strings allowed are SVG namespace names (the report drops them
    # too, as an inline <svg> needs none), so nothing here is a URL a browser would fetch.
    assert set(re.findall(r"https?://[^\s\"'<>)]+", text)) <= NAMESPACES
    assert "//" not in "".join(
        value for _, name, value in page.attributes if name in URL_ATTRIBUTES
    )

    week = parse_iso_week(WEEK)
    moment = AnalysisParams(EXPERIMENT, periods=PeriodParams(until=week.end))
    document = analysis_document(run_analysis(engine, moment)).to_json()
    drift = rows_by_key(page.tables["behavior_drift"])
    assert len(drift) == len(document["behavior_drift"])
    for row in document["behavior_drift"]:
        shown = drift[(metric_label(row["metric"]), row["variation"])]
        assert shown["change"] == format_number(row["effect"], signed=True)
        assert shown["control"] == format_number(row["control_mean"])
        assert shown["for users"] == verdict(row["metric"], row["effect"], row["significant"])
        assert shown["evidence"] == describe_p(row["q_value"])
    style = rows_by_key(page.tables["style_shift"])
    for row in document["style_shift"]:
        shown = style[(metric_label(row["metric"]), row["variation"])]
        assert shown["change"] == format_number(row["effect"], signed=True)
        assert shown["DiD"] == format_number(row["did"], signed=True)
        assert shown["clear change"] == ("yes" if row["significant"] else "no")
    assert "style_shift_by_days" not in page.tables  # drawn as a chart, not shown twice
    assert "For engineers" in text and "`" not in reference.recommendation
    totals = {row[0]: row[2] for row in page.tables["new_users"][1:]}
    assert totals == {v: f"{n:,}" for v, n in document["users"].items()}
    labels = {row[0]: row[1] for row in page.tables["adaptation_labels"][1:]}
    assert labels == {k: f"{n:,}" for k, n in document["adaptation"]["labels"].items()}
    assert html.escape(reference.headline) in text
    assert html.escape(reference.recommendation) in text


@SQLITE_ONLY
def test_csv_zip_holds_one_table_per_file(reference: WeeklyReport) -> None:
    archive = zipfile.ZipFile(io.BytesIO(render_csv_zip(reference)))
    tables = {name: pd.read_csv(archive.open(name)) for name in archive.namelist()}
    plan = reference.plan
    assert plan is not None
    expected = {
        "summary.csv": (["key", "value"], 19),
        "behavior_drift.csv": (
            [
                "metric",
                "variation",
                "control_mean",
                "variation_mean",
                "effect",
                "ci_low",
                "ci_high",
                "q_value",
                "significant",
                "drift_began",
            ],
            7,
        ),
        "style_shift.csv": (
            [
                "metric",
                "variation",
                "effect",
                "ci_low",
                "ci_high",
                "p_value",
                "q_value",
                "significant",
                "n_control",
                "n_variation",
                "did",
                "did_ci_low",
                "did_ci_high",
                "did_p_value",
                "did_n_control",
                "did_n_variation",
            ],
            7,
        ),
        "style_shift_by_days.csv": (
            [
                "metric",
                "variation",
                "bucket",
                "effect",
                "ci_low",
                "ci_high",
                "p_value",
                "n_control",
                "n_variation",
                "did",
                "did_ci_low",
                "did_ci_high",
                "did_p_value",
                "did_n_control",
                "did_n_variation",
            ],
            28,
        ),
        "adaptation_labels.csv": (["label", "this_week", "previous_week", "change"], 5),
        "new_users.csv": (["variation", "new_users", "users_by_week_end"], 2),
        "stages.csv": (
            [
                "at",
                "plan_id",
                "action",
                "stage",
                "move",
                "outcome",
                "decision",
                "note",
                "actor",
                "forced",
            ],
            5,
        ),
        "rollback_options.csv": (list(OPTION_COLUMNS), len(plan.options)),
        "plan_stages.csv": (
            list(STAGE_COLUMNS),
            sum(len(stage.guardrails) for stage in plan.stages),
        ),
    }
    assert {name: (list(t.columns), len(t)) for name, t in tables.items()} == expected
    drift = tables["behavior_drift.csv"].set_index("metric")
    for line in reference.behavior_drift:
        assert drift.loc[line.metric, "effect"] == pytest.approx(line.effect, rel=1e-12)
    assert tables["stages.csv"]["decision"].dropna().tolist() == ["advance", "hold", "hold"]
    assert tables["stages.csv"]["forced"].tolist() == [False, False, False, False, True]
    options = tables["rollback_options.csv"].set_index("name")
    assert options["recommended"].sum() == 1 and options.loc[plan.option, "chosen"]
    for option in plan.options:
        assert options.loc[option.name, "exposed_user_days"] == pytest.approx(
            option.exposed_user_days
        )
    assert render_csv_zip(reference) == render_csv_zip(reference)  # same bytes every time


@pytest.mark.browser
@SQLITE_ONLY
def test_pdf_holds_the_headline(reference: WeeklyReport, tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("PDF needs Chromium: apt-get install chromium")
    if shutil.which("pdftotext") is None:
        pytest.skip("reading the PDF needs pdftotext: apt-get install poppler-utils")
    target = tmp_path / "report.pdf"
    render_pdf(reference, target)
    assert target.read_bytes().startswith(b"%PDF")
    text = subprocess.run(
        ["pdftotext", "-layout", str(target), "-"], capture_output=True, text=True, check=True
    ).stdout
    first_words = " ".join(reference.headline.split()[:6])
    assert first_words in " ".join(text.split())


def test_pdf_without_chromium_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ReportError, match="Debian's chromium package"):
        render_pdf(empty_report(), tmp_path / "report.pdf")


def empty_report(plan: PlanView | None = None) -> WeeklyReport:
    """A report of nothing (or only of ``plan``), built by hand."""
    return WeeklyReport(
        experiment_id="x",
        feature_key=None,
        week=IsoWeek(2026, 44),
        control="0",
        first_exposure=None,
        multiple_exposures=0,
        srm_p_value=None,
        srm_ok=None,
        half_life_days=None,
        behavior_drift=(),
        style_shift=(),
        style_by_days=(),
        labels=(),
        new_users=(),
        stages=(),
        headline="",
        recommendation="",
        plan=plan,
    )


@SQLITE_ONLY
def test_a_headline_list_says_when_it_names_only_the_clearest(
    reference: WeeklyReport, engine: sa.Engine
) -> None:
    """The headline names at most three metrics of each kind: all of them, or the three with
    the smallest q-values said to be the clearest (not read as the whole list)."""
    assert "on 3 of 7 style metrics: " in reference.headline
    later = build_weekly_report(engine, EXPERIMENT, "2026-W46")
    assert "on 4 of 7 style metrics, the clearest: " in later.headline
    assert "on 3 of 7 behaviour metrics: " in later.headline


def test_the_plan_mode_and_forced_advances_are_shown_as_such(reference: WeeklyReport) -> None:
    plan = reference.plan
    assert plan is not None and plan.mode == "record_only"
    [advance] = plan.forced
    assert (advance.actor, advance.reason, advance.guardrails_action) == (
        FORCED_BY,
        FORCED_REASON,
        "hold",
    )
    # In the steps of the week: a forced advance, by whom and why, not an ordinary apply.
    [line] = [s for s in reference.stages if s.forced]
    assert (line.what, line.actor, line.stage) == ("forced advance", FORCED_BY, advance.stage)
    assert line.note.startswith(f"forced past the guardrails (they said hold): {FORCED_REASON}")
    assert all(s.what == s.action for s in reference.stages if not s.forced)
    markdown = render_markdown(reference)
    row = next(r for r in markdown.splitlines() if "| forced advance |" in r)
    assert f"| {FORCED_BY} |" in row and FORCED_REASON in row
    assert f"forced past the guardrails by {FORCED_BY}" in reference.headline
    # The mode, in the recommendation, the summary and the plan's paragraph.
    assert "It runs record-only: stages are recorded, GrowthBook is never written." in (
        reference.recommendation
    )
    assert "| rollback mode | record-only: stages are recorded, GrowthBook is never written |" in (
        markdown
    )
    page = read_page(render_html(reference))
    steps = page.tables["stages"]
    head = steps[0]
    forced_rows = [dict(zip(head, r, strict=True)) for r in steps[1:] if "forced advance" in r]
    assert [(r["by"], r["stage"]) for r in forced_rows] == [(FORCED_BY, str(advance.stage))]
    text = render_html(reference)
    assert html.escape(f"{FORCED_BY} forced stage {advance.stage} of plan") in text
    # The options chart, with the recommended option marked.
    chart = text[text.index('<figure id="chart-rollback_options">') :]
    chart = chart[: chart.index("</figure>")]
    assert ">recommended<" in chart and ">chosen<" in chart


def _option(name: str, second: float, exposed: float, **flags: bool) -> PlanOption:
    return PlanOption.from_json(
        {
            "strategy": "adaptation_aware",
            "name": name,
            "label": f"option {name}",
            "stages": 3,
            "duration_days": 6.0,
            "expected_second_disruptions": second,
            "exposed_user_days": exposed,
            "combined_cost": second + exposed / 30,
            **flags,
        }
    )


def _plan_stage(index: int, cumulative: float, users: int, mdr: float | None) -> PlanStage:
    return PlanStage.from_json(
        {
            "index": index,
            "cohort": "partial",
            "kind": "rollback",
            "coverage": cumulative,
            "cumulative_coverage": cumulative,
            "users": users,
            "cumulative_users": users,
            "start_day": 1.5 * index,
            "min_hold_hours": 72.0 if mdr is not None else 24.0,
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


def test_plan_stages_show_coverage_and_what_their_guardrails_can_see() -> None:
    plan = PlanView(
        plan_id=7,
        mode="live",
        revision=2,
        option="b",
        exposure_day_cost=30.0,
        options=(
            _option("a", 400.0, 0.0, pareto=True),
            _option("b", 250.4, 1_210.6, pareto=True, recommended=True),
            _option("c", 260.0, 1_500.0),
            _option("d", 180.0, 3_000.0, pareto=True, fits_deadline=False),
        ),
        stages=(
            _plan_stage(0, 0.25, 120, 0.031),
            _plan_stage(1, 0.5, 240, 0.012),
            _plan_stage(2, 1.0, 480, None),
        ),
        forced=(ForcedAdvance(7, 1, parse_iso_week(WEEK).start, "ci-bot", "deadline", "pause", 3),),
    )
    report = empty_report(plan)
    markdown = render_markdown(report)
    # Whole users, days, shares; per guardrail the smallest detectable regression.
    assert (
        "| 0 | day 0.0 | partial | rollback | 25% | 120 | 3.0 days | 3.1 pts: too coarse | 0.031 "
        "| no: complaints |"
    ) in markdown
    assert (
        "| 1 | day 1.5 | partial | rollback | 50% | 240 | 3.0 days | 1.2 pts | 0.012 | yes |"
        in (markdown)
    )
    assert (
        "| 2 | day 3.0 | partial | rollback | 100% | 480 | 24 hours | no test | no test | no test |"
        in (markdown)
    )
    assert "complaints (tolerated 2.0 pts)" in markdown
    assert "Stage 0 is too small or too short" in markdown and "fewer, larger steps" in markdown
    # The options on the front (and the recommended one), whole users and user-days.
    assert "| option b | 250 | 1,211 | 291 | 6.0 | 3 | recommended, chosen |" in markdown
    assert "| option d | 180 | 3,000 | 280 | 6.0 | 3 | misses the deadline |" in markdown
    assert "option c" not in markdown  # neither on the front nor chosen
    assert "30 exposed user-days (active days on the misbehaving model) count as one" in markdown
    assert "Plan 7 (revision 2) runs live: each stage is written to GrowthBook." in markdown
    assert "ci-bot forced stage 1 of plan 7 past the guardrails (the guardrails said pause): " in (
        markdown
    )
    page = read_page(render_html(report))
    assert page.tags.count("svg") == 1  # the options chart alone: no analysis here
    stages = page.tables["plan_stages"]
    assert stages[0][-1] == "guardrails can see it"
    assert [row[4] for row in stages[1:]] == ["25%", "50%", "100%"]
    archive = zipfile.ZipFile(io.BytesIO(render_csv_zip(report)))
    rows = pd.read_csv(archive.open("plan_stages.csv"))
    assert rows["min_detectable_regression"].tolist()[:4] == [0.031, 0.031, 0.012, 0.012]
    assert rows["can_see"].tolist() == [False, True, True, True, False, False]


@pytest.mark.parametrize(
    ("week", "message"),
    [
        ("2026-44", "not an ISO week"),
        ("W44", "not an ISO week"),
        ("2026-W44x", "not an ISO week"),
        ("2026-W00", "does not exist"),
        ("2025-W53", "2025 has ISO weeks 01 to 52"),
    ],
)
def test_a_bad_week_is_refused_by_name(week: str, message: str) -> None:
    with pytest.raises(WeekError, match=message) as raised:
        parse_iso_week(week)
    assert str(raised.value).startswith("week: ")
    assert isinstance(raised.value, ValueError)


def test_iso_weeks_run_monday_to_monday_utc() -> None:
    week = parse_iso_week("2026-W53")
    assert (week.start.isoformat(), week.end.isoformat()) == (
        "2026-12-28T00:00:00+00:00",
        "2027-01-04T00:00:00+00:00",
    )
    assert parse_iso_week("2027-W01").previous() == week
    assert week.span == "Monday 2026-12-28 to Sunday 2027-01-03"


@SQLITE_ONLY
def test_weeks_before_the_experiment_and_without_a_plan(engine: sa.Engine, tmp_path: Path) -> None:
    load_demo(engine, tmp_path, DemoConfig(n_users=DEMO.n_users, seed=DEMO.seed))
    save_analysis(engine, run_analysis(engine, AnalysisParams(EXPERIMENT)))

    early = build_weekly_report(engine, EXPERIMENT, "2026-W42")  # the experiment began W43
    assert not early.has_users
    assert "no users" in early.headline.lower()
    assert "2026-10-19" in early.headline  # when the first exposure came
    assert early.behavior_drift == () and early.stages == ()
    assert "No users yet" in render_markdown(early)
    assert read_page(render_html(early)).tags.count("svg") == 0
    for fmt in ("md", "html", "csv"):
        assert report_bytes(early, fmt)[0]

    later = build_weekly_report(engine, EXPERIMENT, WEEK)  # drift, and no plan at all
    assert later.stages == ()
    assert "No rollback step was taken this week." in later.headline
    assert "a rollback should be planned" in later.recommendation
    # Words for whoever reads it; the command is in the engineers' section.
    assert "`" not in later.recommendation and "aftershock" not in later.recommendation
    assert later.engineer_notes[0].startswith(
        "aftershock plan --experiment chat-model-upgrade --feature chat-model"
    )
    with pytest.raises(ReportError, match="no stored exposures"):
        build_weekly_report(engine, "no-such-experiment", WEEK)


@SQLITE_ONLY
def test_the_command_writes_each_format(
    reference: WeeklyReport, report_cli: typer.Typer, tmp_path: Path
) -> None:
    runner = CliRunner()
    for fmt, suffix in (("md", "md"), ("html", "html"), ("csv", "zip")):
        target = tmp_path / "out" / f"report.{suffix}"
        args = ["report", "--experiment", EXPERIMENT, "--week", WEEK, "--format", fmt]
        result = runner.invoke(report_cli, [*args, "--out", str(target)])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == f"wrote {target}"
        assert target.read_bytes() == report_bytes(reference, fmt)[0]
    # Without --format the suffix says it; a suffix that names another format is refused.
    target = tmp_path / "out" / "inferred.md"
    args = ["report", "--experiment", EXPERIMENT, "--week", WEEK, "--out"]
    assert runner.invoke(report_cli, [*args, str(target)]).exit_code == 0
    assert target.read_bytes() == report_bytes(reference, "md")[0]
    for out, fmt, said in (
        ("w.csv", "csv", "writes a zip of CSV files: name the file w.zip"),
        ("w.html", "pdf", "writes PDF: name the file w.pdf"),
        ("w.txt", None, "cannot tell the format from 'w.txt'"),
    ):
        given = [] if fmt is None else ["--format", fmt]
        result = runner.invoke(report_cli, [*args, str(tmp_path / out), *given])
        shown = " ".join(result.output.replace("│", " ").split())  # Typer draws a box
        assert result.exit_code == 2 and said in shown, result.output
        assert not (tmp_path / out).exists()
    result = runner.invoke(
        report_cli, ["report", "--experiment", EXPERIMENT, "--week", "2999-W01", "--out", "x.md"]
    )
    shown = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "2999-W01 has not started yet" in shown

    result = runner.invoke(
        report_cli,
        ["report", "--experiment", EXPERIMENT, "--week", "2026-44", "--out", "x.md"],
    )
    assert result.exit_code == 2 and "--week" in result.output and "2026-W44" in result.output
    result = runner.invoke(
        report_cli,
        ["report", "--experiment", "nope", "--week", WEEK, "--out", str(tmp_path / "x.md")],
    )
    assert result.exit_code == 1 and "no stored exposures" in result.stderr
    assert f"experiments with exposures: '{EXPERIMENT}'" in result.stderr
    typo = EXPERIMENT[:-2] + EXPERIMENT[-1]
    result = runner.invoke(
        report_cli,
        ["report", "--experiment", typo, "--week", WEEK, "--out", str(tmp_path / "x.md")],
    )
    assert f"did you mean '{EXPERIMENT}'?" in result.stderr
    # Error messages are printed as they are: brackets are not taken for console markup.
    result = runner.invoke(
        report_cli,
        ["report", "--experiment", "[bold]x[/bold]", "--week", WEEK, "--out", "x.md"],
    )
    assert "experiment '[bold]x[/bold]' has no stored exposures" in result.stderr


# --- each analysis once per version of the data --------------------------------------------


def test_a_second_report_of_the_same_data_analyses_nothing(
    reference: WeeklyReport, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import rollout.report.snapshots as snapshots

    def refuse(*_: object) -> None:
        raise AssertionError("analysed again")

    monkeypatch.setattr(snapshots, "analyse", refuse)
    again = build_weekly_report(engine, EXPERIMENT, WEEK)
    assert report_bytes(again, "md") == report_bytes(reference, "md")
    # The snapshots are the report's: the experiment's latest analysis is still the stored one.
    latest = load_latest_analysis(engine, EXPERIMENT)
    assert latest is not None and latest.until is None

    # New data makes them stale: the next report analyses again.
    monkeypatch.undo()
    calls: list[AnalysisParams] = []
    real = snapshots.analyse

    def counted(engine: sa.Engine, moments: list[AnalysisParams]) -> object:
        calls.extend(moments)
        return real(engine, moments)

    monkeypatch.setattr(snapshots, "analyse", counted)
    load_demo(engine, tmp_path, DemoConfig(n_users=20, seed=77))
    build_weekly_report(engine, EXPERIMENT, WEEK)
    assert len(calls) == 2


def test_a_week_ending_after_the_data_reuses_the_stored_analysis(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rollout.report.snapshots as snapshots

    load_demo(engine, tmp_path, DemoConfig(n_users=300, seed=5))
    save_analysis(engine, run_analysis(engine, AnalysisParams(EXPERIMENT)))
    end = data_end(engine, EXPERIMENT)
    last = IsoWeek(*end.isocalendar()[:2])  # the week the data ends in
    calls: list[datetime | None] = []
    real = snapshots.analyse

    def counted(engine: sa.Engine, moments: list[AnalysisParams]) -> object:
        calls.extend(m.periods.until for m in moments)
        return real(engine, moments)

    monkeypatch.setattr(snapshots, "analyse", counted)
    build_weekly_report(engine, EXPERIMENT, last.label)
    assert calls == [last.start]  # only the week's start: its end is after all the data


def test_the_code_version_follows_the_source(tmp_path: Path) -> None:
    """Stored analyses are reused only by the code that computed them (find_reusable_analysis
    matches the code version): a change to any module changes it, a rename too."""
    from analytics import source_digest

    (tmp_path / "inference").mkdir()
    module = tmp_path / "inference" / "tests.py"
    module.write_text("ALPHA = 0.05\n")
    before = source_digest(tmp_path)
    assert source_digest(tmp_path) == before
    module.write_text("ALPHA = 0.01\n")
    changed = source_digest(tmp_path)
    module.rename(tmp_path / "inference" / "ttests.py")
    assert len({before, changed, source_digest(tmp_path)}) == 3
