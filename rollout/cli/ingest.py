"""``aftershock ingest exposures|interactions``: one summary per file, a progress bar on a
terminal for big files."""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from analytics.errors import AftershockError
from rollout.cli.console import err, out, unexpected

if TYPE_CHECKING:
    from analytics.ingest.runner import IngestSummary

PROGRESS_MIN_BYTES = 16 << 20

Strict = Annotated[bool, typer.Option("--strict", help="Refuse a whole file on any bad row.")]
Files = Annotated[list[Path], typer.Argument(help="CSV, JSONL or Parquet files, optionally .gz")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the summaries as JSON.")]


def exposures(files: Files, strict: Strict = False, as_json: AsJson = False) -> None:
    """Ingest GrowthBook experiment_viewed exposures."""
    _ingest("exposures", files, strict, as_json)


class StoreText(StrEnum):
    all = "all"
    sample = "sample"
    none = "none"


def interactions(
    files: Files,
    strict: Strict = False,
    as_json: AsJson = False,
    store_text: Annotated[
        StoreText | None,
        typer.Option(
            "--store-text",
            help="Which prompts and responses to keep: all, a fixed sample of users' "
            "(default, AFTERSHOCK_TEXT_SAMPLE_SHARE), or none. Features are always kept. "
            "Default: AFTERSHOCK_STORE_TEXT.",
        ),
    ] = None,
) -> None:
    """Ingest the LLM feature's interaction logs."""
    _ingest("interactions", files, strict, as_json, store_text)


class _BarProgress:
    """Draws ingest progress on a terminal (checking: bytes, writing: rows)."""

    def __init__(self, progress: RichProgress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def phase(self, description: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)


def _ingest(
    kind: Literal["exposures", "interactions"],
    files: list[Path],
    strict: bool,
    as_json: bool,
    store_text: StoreText | None = None,
) -> None:
    from analytics.db import get_engine
    from analytics.ingest.retention import TextRetention
    from analytics.ingest.runner import ingest_file
    from analytics.models import IngestKind
    from analytics.settings import get_settings

    settings = get_settings()
    engine = get_engine()
    retention = TextRetention(
        store_text.value if store_text else settings.store_text, settings.text_sample_share
    )
    summaries: list[IngestSummary] = []
    refused = 0
    for path in files:
        show_bar = err.is_terminal and path.is_file() and path.stat().st_size >= PROGRESS_MIN_BYTES
        columns = (
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        try:
            with RichProgress(*columns, console=err, disable=not show_bar, transient=True) as bar:
                summary = ingest_file(
                    path,
                    IngestKind(kind),
                    engine=engine,
                    rejects_dir=settings.resolved_rejects_dir(),
                    strict=strict,
                    chunk_rows=settings.ingest_chunk_rows,
                    progress=_BarProgress(bar),
                    retention=retention,
                )
        except AftershockError as exc:
            refused += 1
            err.print(f"refused: {exc}", style="red", highlight=False, soft_wrap=True)
            continue
        except Exception as exc:  # a bug; the run says it failed, the next file goes on
            refused += 1
            err.print(
                f"failed: {path}: {unexpected(exc)}", style="red", highlight=False, soft_wrap=True
            )
            continue
        summaries.append(summary)
        if not as_json:
            _print_summary(summary)
    if as_json:
        out.print_json(json.dumps([asdict(s) for s in summaries], default=str))
    if refused:
        raise typer.Exit(code=1)


def _print_summary(s: IngestSummary) -> None:
    resumed = f" (resumed at row {s.resumed_from_row:,})" if s.resumed_from_row else ""
    out.print(
        f"{s.file}: {s.rows_read:,} rows read{resumed}, {s.rows_inserted:,} inserted, "
        f"{s.rows_duplicate:,} duplicate, {s.rows_rejected:,} rejected",
        highlight=False,
        soft_wrap=True,
    )
    for warning in s.warnings:
        err.print(f"warning: {warning}", style="yellow", highlight=False, soft_wrap=True)
    if s.rejects_path:
        for column, reason, count in s.top_reject_reasons:
            out.print(f"  {count:,} x {column}: {reason}", highlight=False)
        out.print(f"  rejected rows: {s.rejects_path}", highlight=False, soft_wrap=True)
