"""The weekly report as a self-contained HTML file, a zip of CSVs, and a PDF."""

from __future__ import annotations

import html
import io
import re
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rollout import browser as headless
from rollout.report.model import MEDIA_TYPES, REPORT_FORMATS, PlanView, ReportError, WeeklyReport

if TYPE_CHECKING:
    from rollout.report.charts import Figure
from rollout.report.tables import (
    NO_PLAN,
    PLAN_TABLES,
    Table,
    build_tables,
    plan_paragraph,
    render_markdown,
)

# The columns of the analysis tables' CSV files (a subset of the rows' fields).
DRIFT_COLUMNS = (
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
)
STYLE_COLUMNS = (
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
)
DAYS_COLUMNS = (
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
)
OPTION_COLUMNS = (
    "name",
    "label",
    "strategy",
    "stages",
    "duration_days",
    "expected_second_disruptions",
    "exposed_user_days",
    "expected_new_adapters",
    "combined_cost",
    "recommended",
    "pareto",
    "fits_deadline",
    "chosen",
)
# One row per stage and guardrail: the stage's fields, then the guardrail's.
STAGE_COLUMNS = (
    "index",
    "cohort",
    "kind",
    "start_day",
    "coverage",
    "cumulative_coverage",
    "users",
    "cumulative_users",
    "min_hold_hours",
    "metric",
    "max_regression",
    "min_detectable_regression",
    "can_see",
)

# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
       max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
p.period { color: #57606a; margin-top: 0; }
p.headline { font-size: 1.05rem; }
#engineers code { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .85em; }
p.recommendation { background: #f6f8fa; border-left: 4px solid #2f5d9e; padding: .6rem .8rem; }
p.note { color: #57606a; font-size: .9rem; }
p.plan { border-left: 4px solid #d1495b; padding: .2rem .8rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f6f8fa; }
tr.significant td { background: #fff8c5; }
figure { margin: 1rem 0; break-inside: avoid; }
figcaption { color: #57606a; font-size: .85rem; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } }
"""

_NUMERIC = re.compile(r"[-+<]?[\d,]*\.?\d+|\[\S+, \S+\]")


def _html_table(table: Table) -> str:
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    title = f"<h2>{html.escape(table.title)}</h2>"
    if not table.rows:
        return f'{title}{note}<p id="{table.key}">{html.escape(table.empty)}</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for index, row in enumerate(table.rows):
        marked = index < len(table.marked) and table.marked[index]
        cells = "".join(
            f'<td class="num">{html.escape(c)}</td>'
            if _NUMERIC.fullmatch(c)
            else f"<td>{html.escape(c)}</td>"
            for c in row
        )
        body.append(f'<tr class="significant">{cells}</tr>' if marked else f"<tr>{cells}</tr>")
    return (
        f'{title}{note}<table id="{table.key}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _html_figure(figure: Figure) -> str:
    if figure.svg is None:
        return f'<p class="note">{html.escape(figure.caption)} No data yet.</p>'
    return (
        f'<figure id="chart-{figure.key}">{figure.svg}'
        f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
    )


def _html_plan(report: WeeklyReport, tables: dict[str, Table], figures: dict[str, Figure]) -> str:
    """The plan standing at the end of the week: in words, its options as a chart and a
    table, and its stages."""
    title = "<h2>Rollback plan</h2>"
    if report.plan is None:
        return f'{title}<p id="plan">{html.escape(NO_PLAN)}</p>'
    parts = [
        title,
        f'<p class="plan" id="plan">{html.escape(plan_paragraph(report))}</p>',
        _html_figure(figures["rollback_options"]),
        *(_html_table(tables[key]) for key in PLAN_TABLES),
    ]
    return "".join(parts)


def _html_engineers(report: WeeklyReport) -> str:
    """The last section: the commands behind the recommendation, for engineers."""
    if not report.engineer_notes:
        return ""
    notes = "".join(f"<li><code>{html.escape(n)}</code></li>" for n in report.engineer_notes)
    return f'<h2>For engineers</h2><ul id="engineers">{notes}</ul>'


def render_html(report: WeeklyReport) -> str:
    """The report as one self-contained HTML file: inline CSS, the charts as inline SVG, no
    script and no external URL (it opens offline and prints as is)."""
    tables = {table.key: table for table in build_tables(report)}
    from rollout.report.charts import build_figures  # Altair: only for the formats with charts

    figures = {figure.key: figure for figure in build_figures(report)}
    order = [
        _html_table(tables["summary"]),
        _html_table(tables["behavior_drift"]),
        _html_table(tables["style_shift"]),
        # The chart shows the by-days shift; its table is in the Markdown and CSV exports.
        _html_figure(figures["style_shift_by_days"]),
        _html_table(tables["adaptation_labels"]),
        _html_figure(figures["adaptation_labels"]),
        _html_table(tables["new_users"]),
        _html_plan(report, tables, figures),
        _html_table(tables["stages"]),
        _html_engineers(report),
    ]
    title = html.escape(report.title)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_CSS}</style></head><body>"
        f"<h1>{title}</h1>"
        f'<p class="period">Week {html.escape(report.week.label)}: '
        f"{html.escape(report.week.span)}, UTC. Figures are the analysis of the data as it "
        "stood at the end of the week.</p>"
        f'<h2>Headline</h2><p class="headline" id="headline">{html.escape(report.headline)}</p>'
        f'<p class="recommendation" id="recommendation"><strong>Recommendation.</strong> '
        f"{html.escape(report.recommendation)}</p>" + "".join(order) + "</body></html>\n"
    )


# --- CSV ------------------------------------------------------------------------------------


def build_frames(report: WeeklyReport) -> dict[str, pd.DataFrame]:
    """One data frame per table, with full-precision numbers (the zip's CSV files)."""
    summary = [
        ("experiment_id", report.experiment_id),
        ("week", report.week.label),
        ("week_start", report.week.start.isoformat()),
        ("week_end", report.week.end.isoformat()),
        ("headline", report.headline),
        ("recommendation", report.recommendation),
        (
            "first_exposure",
            "" if report.first_exposure is None else report.first_exposure.isoformat(),
        ),
        ("users", str(sum(line.total_users for line in report.new_users))),
        ("new_users", str(sum(line.new_users for line in report.new_users))),
        ("multiple_exposures", str(report.multiple_exposures)),
        ("srm_p_value", "" if report.srm_p_value is None else repr(report.srm_p_value)),
        ("srm_ok", "" if report.srm_ok is None else str(report.srm_ok).lower()),
        ("half_life_days", "" if report.half_life_days is None else repr(report.half_life_days)),
        *_plan_summary(report.plan),
    ]
    options = [] if report.plan is None else list(report.plan.options)
    chosen = None if report.plan is None else report.plan.option
    plan_stages = [] if report.plan is None else list(report.plan.stages)
    return {
        "summary": pd.DataFrame(summary, columns=["key", "value"]),
        "behavior_drift": _frame(report.behavior_drift, DRIFT_COLUMNS),
        "style_shift": _frame(report.style_shift, STYLE_COLUMNS),
        "style_shift_by_days": _frame(report.style_by_days, DAYS_COLUMNS),
        "adaptation_labels": pd.DataFrame(
            [(x.label, x.this_week, x.previous_week, x.change) for x in report.labels],
            columns=["label", "this_week", "previous_week", "change"],
        ),
        "new_users": pd.DataFrame(
            [(x.variation, x.new_users, x.total_users) for x in report.new_users],
            columns=["variation", "new_users", "users_by_week_end"],
        ),
        "stages": pd.DataFrame(
            [
                (
                    x.at.isoformat(),
                    x.plan_id,
                    x.action,
                    x.stage,
                    x.move,
                    x.outcome,
                    x.decision,
                    x.note,
                    x.actor,
                    x.forced,
                )
                for x in report.stages
            ],
            columns=[
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
        ),
        "rollback_options": pd.DataFrame(
            [
                {**{c: getattr(o, c) for c in OPTION_COLUMNS[:-1]}, "chosen": o.name == chosen}
                for o in options
            ],
            columns=list(OPTION_COLUMNS),
        ),
        "plan_stages": pd.DataFrame(
            [
                (
                    *(getattr(stage, c) for c in STAGE_COLUMNS[:9]),
                    spec.metric,
                    spec.max_regression,
                    spec.min_detectable_regression,
                    spec.can_see,
                )
                for stage in plan_stages
                for spec in stage.guardrails
            ],
            columns=list(STAGE_COLUMNS),
        ),
    }


def _plan_summary(plan: PlanView | None) -> list[tuple[str, str]]:
    if plan is None:
        return [("plan_id", "")]
    return [
        ("plan_id", str(plan.plan_id)),
        ("plan_revision", str(plan.revision)),
        ("plan_mode", plan.mode),
        ("plan_option", plan.option),
        (
            "exposure_day_cost",
            "" if plan.exposure_day_cost is None else repr(plan.exposure_day_cost),
        ),
        ("forced_advances", str(len(plan.forced))),
    ]


def _frame(rows: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame([[getattr(x, c) for c in columns] for x in rows], columns=list(columns))


def render_csv_zip(report: WeeklyReport) -> bytes:
    """A zip of one CSV per table (``summary.csv``, ``behavior_drift.csv``, ...); the same
    report gives the same bytes (fixed member times)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, frame in build_frames(report).items():
            member = zipfile.ZipInfo(f"{name}.csv", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(member, frame.to_csv(index=False, lineterminator="\n"))
    return buffer.getvalue()


# --- PDF ------------------------------------------------------------------------------------


def find_chromium() -> str:
    """The Chromium executable PDFs are printed with, or a :class:`ReportError` saying how
    to install it."""
    executable = headless.find_chromium()
    if executable is None:
        raise ReportError(headless.NO_CHROMIUM)
    return executable


PDF_OPTIONS: dict[str, Any] = {
    "format": "A4",
    "print_background": True,
    "margin": {"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"},
}


def start_pdf_printer() -> headless.PdfPrinter:
    """Headless Chromium, launching on a thread of its own while the caller builds and
    renders the report (:func:`rollout.browser.start_pdf_printer`); give it to
    :func:`render_pdf` and close it (``with``) whatever happens. Refuses at once, with what
    to install, when Chromium or Playwright is missing."""
    try:
        return headless.start_pdf_printer()
    except headless.BrowserError as exc:
        raise ReportError(str(exc)) from exc


def render_pdf(
    report: WeeklyReport, path: Path | str, *, printer: headless.PdfPrinter | None = None
) -> None:
    """Print the HTML report to a PDF file at ``path`` with headless Chromium (Playwright).

    ``printer``: one :func:`start_pdf_printer` started earlier (it prints this report and
    is then done); without one, Chromium is launched here, while the charts are rendered.
    The page is loaded from a string and every request is aborted: the report fetches
    nothing, and this keeps it so.
    """
    if printer is None:
        with start_pdf_printer() as started:
            render_pdf(report, path, printer=started)
        return
    page_html = render_html(report)
    from playwright.sync_api import Error as PlaywrightError

    try:
        printer.print_pdf(page_html, path, **PDF_OPTIONS)
    except PlaywrightError as exc:
        raise ReportError(f"Chromium could not print the report: {_one_line(exc)}") from exc


_PROCESS_TAG = re.compile(r"^\[pid=\d+\](?:\[\w+\])?\s*")


def _one_line(error: Exception) -> str:
    """Playwright's message in one line: its first, and what the browser itself wrote (the
    lines of its "Browser logs" other than Playwright's own ``<launching>`` notes)."""
    lines = [line.strip() for line in str(error).splitlines()]
    said: list[str] = []
    if "Browser logs:" in lines:
        for line in lines[lines.index("Browser logs:") + 1 :]:
            if line.startswith("Call log:"):
                break
            line = _PROCESS_TAG.sub("", line)  # "[pid=123][err] ..."
            if line and not line.startswith("<"):
                said.append(line)
    first = lines[0] if lines and lines[0] else type(error).__name__
    return first + (f" (Chromium said: {'; '.join(said[-3:])})" if said else "")


def report_bytes(report: WeeklyReport, fmt: str) -> tuple[bytes, str]:
    """The report in ``fmt`` (html, md, csv, pdf) and its media type, e.g. for an HTTP reply."""
    if fmt == "html":
        content = render_html(report).encode()
    elif fmt == "md":
        content = render_markdown(report).encode()
    elif fmt == "csv":
        content = render_csv_zip(report)
    elif fmt == "pdf":
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "report.pdf"
            render_pdf(report, target)
            content = target.read_bytes()
    else:
        raise ReportError(f"format: {fmt!r} is not one of {', '.join(REPORT_FORMATS)}")
    return content, MEDIA_TYPES[fmt]


def report_file_name(report: WeeklyReport, fmt: str) -> str:
    """``chat-model-upgrade-2026-W44.html`` (``.zip`` for csv): a name to save it under."""
    extension = "zip" if fmt == "csv" else fmt
    return f"{report.experiment_id}-{report.week.label}.{extension}"
