"""``aftershock report``: the weekly adaptation report of an experiment, written to a file."""

from __future__ import annotations

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


@reports_errors
def report(
    experiment: Annotated[str, typer.Option("--experiment", help="GrowthBook experiment key.")],
    week: Annotated[str, typer.Option("--week", help="ISO week, e.g. 2026-W44 (UTC).")],
    out_path: Annotated[
        Path, typer.Option("--out", help="Write the report here (csv: a zip of CSV files).")
    ],
    fmt: Annotated[
        ReportFormat, typer.Option("--format", case_sensitive=False, help="Output format.")
    ] = ReportFormat.html,
    feature: Annotated[
        str | None, typer.Option("--feature", help="Only the plans of this feature.")
    ] = None,
) -> None:
    """Write the weekly adaptation report: drift, style shift, adaptation, rollback steps."""
    from analytics.db import ensure_schema, get_engine
    from rollout.report import (
        WeekError,
        build_weekly_report,
        parse_iso_week,
        render_pdf,
        report_bytes,
    )

    try:
        parse_iso_week(week)
    except WeekError as exc:
        raise typer.BadParameter(str(exc), param_hint="--week") from exc
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
