"""``aftershock report``: the weekly adaptation report of an experiment, written to a file."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rollout.cli.console import out, reports_errors


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


@reports_errors
def report(
    experiment: Annotated[str, typer.Option("--experiment", help="GrowthBook experiment key.")],
    week: Annotated[str, typer.Option("--week", help="ISO week, e.g. 2026-W44 (UTC).")],
    out_path: Annotated[
        Path, typer.Option("--out", help="Write the report here (csv: a zip of CSV files).")
    ],
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
    from analytics.db import ensure_schema, get_engine
    from rollout.report import (
        IsoWeek,
        WeekError,
        build_weekly_report,
        parse_iso_week,
        render_pdf,
        report_bytes,
    )

    fmt = report_format(out_path, fmt)
    try:
        iso = parse_iso_week(week)
    except WeekError as exc:
        raise typer.BadParameter(str(exc), param_hint="--week") from exc
    this_week = IsoWeek(*datetime.now(UTC).isocalendar()[:2])
    if iso.start > this_week.start:
        raise typer.BadParameter(
            f"{iso.label} has not started yet (this is {this_week.label})", param_hint="--week"
        )
    engine = get_engine()
    ensure_schema(engine)
    built = build_weekly_report(engine, experiment, week, feature_key=feature)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == ReportFormat.pdf:
        render_pdf(built, out_path)
    else:
        content, _ = report_bytes(built, fmt.value)
        out_path.write_bytes(content)
    out.print(f"wrote {out_path}", highlight=False, soft_wrap=True)
