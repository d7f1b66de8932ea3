"""The weekly adaptation report: what one ISO week did to an experiment and what to do next.

``build_weekly_report`` gathers the figures; ``render_markdown``, ``render_html`` (one
self-contained file: inline CSS, Altair charts as inline SVG, no external URL),
``render_csv_zip`` and ``render_pdf`` (the HTML printed by headless Chromium) show them.

The drift and style-shift tables are the analysis pipeline run on the data as it stood at the
end of the week (``PeriodParams(until=...)``, the same as ``aftershock analyze --as-of``), with
the parameters of the experiment's latest stored run. Each is computed once per version of the
stored data: kept as a report snapshot (never an experiment's latest analysis) and reused by
the next report of the same data, as is the stored full analysis when the week ends after the
data does. Rollback
steps are the plans' recorded events (``plan_events``), so the report, the CLI and the API
show the same numbers. Nothing in the output depends on the wall clock: the same data gives
the same Markdown byte for byte (the clock only picks the week when none is named: the last
complete week with data, ``rollout.report.weeks``).
"""

from rollout.report.build import build_weekly_report
from rollout.report.model import (
    REPORT_FORMATS,
    ExperimentNotFoundError,
    IsoWeek,
    ReportError,
    WeekError,
    WeeklyReport,
    parse_iso_week,
)
from rollout.report.render import (
    find_chromium,
    render_csv_zip,
    render_html,
    render_pdf,
    report_bytes,
    report_file_name,
    start_pdf_printer,
)
from rollout.report.tables import build_tables, format_number, render_markdown

__all__ = [
    "REPORT_FORMATS",
    "ExperimentNotFoundError",
    "IsoWeek",
    "ReportError",
    "WeekError",
    "WeeklyReport",
    "build_tables",
    "build_weekly_report",
    "find_chromium",
    "format_number",
    "parse_iso_week",
    "render_csv_zip",
    "render_html",
    "render_markdown",
    "render_pdf",
    "report_bytes",
    "report_file_name",
    "start_pdf_printer",
]
