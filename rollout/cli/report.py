"""``aftershock report``: the weekly adaptation report of an experiment, written to a file."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rollout.cli.console import out, reports_errors

if TYPE_CHECKING:
    from rollout.browser import PdfPrinter


class ReportFormat(StrEnum):
    html = "html"
    md = "md"
    csv = "csv"
    pdf = "pdf"


SUFFIXES = {
    ".html": ReportFormat.html,
    ".htm": ReportFormat.html,
    ".md": ReportFormat.md,
    ".pdf": ReportFormat.pdf,
    ".zip": ReportFormat.csv,
}


def report_format(out_path: Path, fmt: ReportFormat | None) -> ReportFormat:
    """The format to write: ``--format`` when given, else the one ``--out``'s suffix names;
    a suffix that names another format (``--format pdf --out w.html``, a csv zip named
    ``.csv``) is refused rather than written under a misleading name."""
    named = SUFFIXES.get(out_path.suffix.lower())
    if fmt is None and named is None:
        known = ", ".join(SUFFIXES)
        raise typer.BadParameter(
            f"cannot tell the format from {out_path.name!r}: end it in {known}, or pass --format",
            param_hint="--out",
        )
    fmt = fmt or named
    assert fmt is not None
    if named != fmt:
        wanted = ".zip" if fmt == ReportFormat.csv else f".{fmt.value}"
        what = "a zip of CSV files" if fmt == ReportFormat.csv else fmt.value.upper()
        raise typer.BadParameter(
            f"--format {fmt.value} writes {what}: name the file {out_path.stem}{wanted}",
            param_hint="--out",
        )
    return fmt


WEEK_HELP = (
    "ISO week, e.g. 2026-W44 (Monday to Sunday, UTC); a week that has not ended is refused. "
    "Default: the last complete week with data (the week the stored logs end in, or the "
    "last week that has ended when they run into the current one)."
)


def utc_now() -> datetime:
    """The clock the default week and the refusal of unfinished weeks read."""
    return datetime.now(UTC)


@reports_errors
def report(
    experiment: Annotated[str, typer.Option("--experiment", help="GrowthBook experiment key.")],
    out_path: Annotated[
        Path, typer.Option("--out", help="Write the report here (csv: a zip of CSV files).")
    ],
    week: Annotated[str | None, typer.Option("--week", help=WEEK_HELP)] = None,
    fmt: Annotated[
        ReportFormat | None,
        typer.Option(
            "--format",
            case_sensitive=False,
            help="Output format; default: from --out's suffix (.html, .md, .pdf, .zip for csv).",
        ),
    ] = None,
    feature: Annotated[
        str | None, typer.Option("--feature", help="Only the plans of this feature.")
    ] = None,
) -> None:
    """Write the weekly adaptation report: drift, style shift, adaptation, rollback steps."""
    fmt = report_format(out_path, fmt)
    # A PDF's Chromium launches on a thread of its own from here on, while the report's
    # libraries load and the report is built and rendered (about a second each).
    with _printer_for(fmt) as printer:
        from analytics.db import ensure_schema, get_engine
        from rollout.report import WeekError, build_weekly_report, render_pdf, report_bytes
        from rollout.report.weeks import ended_week

        now = utc_now()
        try:
            asked = ended_week(week, now)
        except WeekError as exc:
            raise typer.BadParameter(str(exc).removeprefix("week: "), param_hint="--week") from exc
        engine = get_engine()
        ensure_schema(engine)
        built = build_weekly_report(
            engine,
            experiment,
            None if asked is None else asked.label,
            feature_key=feature,
            now=now,
        )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if printer is not None:
            render_pdf(built, out_path, printer=printer)
        else:
            content, _ = report_bytes(built, fmt.value)
            out_path.write_bytes(content)
    which = "" if week else f" ({built.week.label}, the last complete week with data)"
    out.print(f"wrote {out_path}{which}", highlight=False, soft_wrap=True)


def _printer_for(fmt: ReportFormat) -> AbstractContextManager[PdfPrinter | None]:
    """A launching Chromium for a PDF (refused at once when it is not installed), else
    nothing; either way to be closed with ``with``."""
    if fmt != ReportFormat.pdf:
        return nullcontext()
    from rollout.browser import start_pdf_printer

    return start_pdf_printer()
