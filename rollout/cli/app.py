"""The ``aftershock`` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
import typer
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from analytics.db import ensure_schema, get_engine, head_revision, schema_revision, upgrade_schema
from analytics.errors import AftershockError
from analytics.ingest import IngestSummary, ingest_file
from analytics.models import IngestKind
from analytics.settings import get_settings
from rollout.cli.api import serve, tokens_app
from rollout.cli.console import err, out, reports_errors
from rollout.cli.plans import growthbook_app, growthbook_split, guardrails, plan
from rollout.cli.report import report

app = typer.Typer(
    help="Aftershock: adaptation-aware rollbacks of LLM features.", no_args_is_help=True
)
ingest_app = typer.Typer(
    help="Load GrowthBook exposures and interaction logs.", no_args_is_help=True
)
demo_app = typer.Typer(help="The seeded demo data set.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
app.add_typer(demo_app, name="demo")
app.add_typer(db_app, name="db")
app.add_typer(growthbook_app, name="growthbook")
app.command("plan")(plan)
app.command("guardrails")(guardrails)
app.add_typer(tokens_app, name="tokens")
app.command("serve")(serve)
app.command("report")(report)

PROGRESS_MIN_BYTES = 16 << 20
F = TypeVar("F", bound=Callable[..., Any])


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


Strict = Annotated[bool, typer.Option("--strict", help="Refuse a whole file on any bad row.")]
Files = Annotated[list[Path], typer.Argument(help="CSV, JSONL or Parquet files, optionally .gz")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the summaries as JSON.")]


def _ingest(kind: IngestKind, files: list[Path], strict: bool, as_json: bool) -> None:
    settings = get_settings()
    engine = get_engine()
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
                    kind,
                    engine=engine,
                    rejects_dir=settings.resolved_rejects_dir(),
                    strict=strict,
                    chunk_rows=settings.ingest_chunk_rows,
                    progress=_BarProgress(bar),
                )
        except AftershockError as exc:
            refused += 1
            err.print(f"refused: {exc}", style="red", highlight=False, soft_wrap=True)
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


@ingest_app.command("exposures")
def ingest_exposures(files: Files, strict: Strict = False, as_json: AsJson = False) -> None:
    """Ingest GrowthBook experiment_viewed exposures."""
    _ingest(IngestKind.exposures, files, strict, as_json)


@ingest_app.command("interactions")
def ingest_interactions(files: Files, strict: Strict = False, as_json: AsJson = False) -> None:
    """Ingest the LLM feature's interaction logs."""
    _ingest(IngestKind.interactions, files, strict, as_json)


@demo_app.command("generate")
def demo_generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")] = Path(
        "data/demo"
    ),
    users: Annotated[int, typer.Option(min=10, help="Number of users.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    variations: Annotated[int, typer.Option(min=2, help="Variations including control.")] = 2,
    fmt: Annotated[Literal["csv", "jsonl", "parquet"], typer.Option("--format")] = "csv",
    gzip: Annotated[bool, typer.Option("--gzip", help="Gzip the data files.")] = False,
) -> None:
    """Write the seeded demo data set (exposures, interactions, ground truth)."""
    from analytics.demo import DemoConfig, generate_demo, write_demo

    data = generate_demo(DemoConfig(n_users=users, seed=seed, variations=variations))
    paths = write_demo(data, out_dir, fmt=fmt, gzip=gzip)
    for name, path in paths.items():
        out.print(f"{name}: {path}", highlight=False)


@app.command("analyze")
@reports_errors
def analyze(
    experiment: Annotated[str, typer.Option("--experiment", help="GrowthBook experiment key.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write analysis.json and users.csv here.")
    ] = None,
    control: Annotated[str, typer.Option(help="The control variation.")] = "0",
    weights: Annotated[
        str | None,
        typer.Option(
            help="Expected split for the SRM check, e.g. 0.5,0.5 (default: from `aftershock "
            "growthbook pull`, else equal)."
        ),
    ] = None,
    min_pre: Annotated[int, typer.Option(min=1, help="Interactions needed before exposure.")] = 3,
    min_post: Annotated[int, typer.Option(min=1, help="Interactions needed after it.")] = 3,
    pre_days: Annotated[float, typer.Option(min=1, help="Days of pre-period to use.")] = 28.0,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            help="Analyse the data as it stood at this UTC time (exposures and logs before it).",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
        ),
    ] = None,
) -> None:
    """Analyse an experiment: behaviour drift, style shift, per-user adaptation."""
    from analytics.analysis.adaptation import AdaptationParams
    from analytics.analysis.pipeline import (
        AnalysisParams,
        analysis_document,
        run_analysis,
        users_table,
    )
    from analytics.analysis.user_periods import PeriodParams
    from analytics.store import save_analysis

    split = None
    if weights:
        try:
            split = tuple(float(w) for w in weights.split(","))
        except ValueError as exc:
            raise typer.BadParameter(
                f"not a list of numbers: {weights!r}", param_hint="--weights"
            ) from exc
    pulled, names = growthbook_split(experiment, control)
    split = split or pulled
    params = AnalysisParams(
        experiment_id=experiment,
        control=control,
        weights=split,
        variation_names=names,
        periods=PeriodParams(
            pre_days=pre_days, until=None if as_of is None else as_of.replace(tzinfo=UTC)
        ),
        adaptation=AdaptationParams(min_pre=min_pre, min_post=min_post),
    )
    engine = get_engine()
    ensure_schema(engine)
    result = run_analysis(engine, params)
    run_id = save_analysis(engine, result)
    document = analysis_document(result)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "analysis.json").write_text(json.dumps(document, indent=2) + "\n")
        users_table(result).to_csv(out_dir / "users.csv", index=False)
    _print_analysis(document, run_id, out_dir)


def _print_analysis(document: dict[str, Any], run_id: int, out_dir: Path | None) -> None:
    srm = document["srm"]
    out.print(
        f"analysis {run_id} of {document['experiment_id']}: users "
        + ", ".join(f"{v}={n:,}" for v, n in document["users"].items())
        + f"; multiple exposures {document['multiple_exposures']}; "
        f"SRM p={srm['p_value']:.4g} ({'ok' if srm['ok'] else 'MISMATCH'})",
        highlight=False,
        soft_wrap=True,
    )
    for title, rows, effect in (
        ("Behaviour drift", document["behavior_drift"], "effect"),
        ("Prompt-style shift (DiD)", document["style_shift"], "did"),
    ):
        table = Table("metric", "variation", effect, "95% CI", "q", title=title)
        for row in rows:
            value = row[effect]
            table.add_row(
                row["metric"],
                row["variation"],
                "-" if value is None else f"{value:+.4g}",
                "-" if row["ci_low"] is None else f"[{row['ci_low']:.3g}, {row['ci_high']:.3g}]",
                "-"
                if row["q_value"] is None
                else f"{row['q_value']:.2g}" + (" *" if row["significant"] else ""),
            )
        out.print(table)
    adaptation = document["adaptation"]
    half_life = adaptation["half_life_days"]
    out.print(
        "adaptation of treated users: "
        + ", ".join(f"{k} {v:,}" for k, v in adaptation["labels"].items())
        + f"; half-life {'n/a' if half_life is None else f'{half_life:.1f} days'}",
        highlight=False,
        soft_wrap=True,
    )
    if out_dir is not None:
        out.print(f"wrote {out_dir / 'analysis.json'} and {out_dir / 'users.csv'}", highlight=False)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations (safe to run at any time)."""
    engine = get_engine()
    before = schema_revision(engine)
    upgrade_schema(engine)
    out.print(f"schema: {before or 'empty'} -> {schema_revision(engine)}", highlight=False)


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision and the newest one."""
    engine = get_engine()
    out.print(f"current: {schema_revision(engine)}  head: {head_revision(engine)}", highlight=False)


@app.command("status")
def status() -> None:
    """What the database holds: rows per table, experiments, the last ingests."""
    engine = get_engine()
    ensure_schema(engine)
    with engine.connect() as connection:
        counts = {
            name: connection.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()
            for name in ("exposures", "interactions", "ingest_runs", "ingest_rejects")
        }
        experiments = connection.execute(
            sa.text(
                "SELECT experiment_id, variation_id, count(DISTINCT user_id) FROM exposures "
                "GROUP BY experiment_id, variation_id ORDER BY experiment_id, variation_id"
            )
        ).all()
        runs = connection.execute(
            sa.text(
                "SELECT id, kind, file_name, status, rows_inserted, rows_duplicate, rows_rejected "
                "FROM ingest_runs ORDER BY id DESC LIMIT 5"
            )
        ).all()
    out.print(f"database: {engine.url.render_as_string(hide_password=True)}", highlight=False)
    for name, count in counts.items():
        out.print(f"  {name}: {count:,}", highlight=False)
    if experiments:
        table = Table("experiment", "variation", "users", title="Experiments")
        for experiment, variation, users in experiments:
            table.add_row(experiment, variation, f"{users:,}")
        out.print(table)
    if runs:
        table = Table(
            "run",
            "kind",
            "file",
            "status",
            "inserted",
            "duplicate",
            "rejected",
            title="Last ingests",
        )
        for run in runs:
            table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in run))
        out.print(table)


@app.command("config")
def show_config() -> None:
    """Print the configuration in force (secrets are never shown)."""
    settings = get_settings()
    out.print(
        f"AFTERSHOCK_DATABASE_URL={sa.make_url(settings.database_url).render_as_string(hide_password=True)}",
        highlight=False,
    )
    out.print(f"AFTERSHOCK_GROWTHBOOK_URL={settings.growthbook_url or ''}", highlight=False)
    key_state = "set" if settings.growthbook_api_key else "not set"
    out.print(f"AFTERSHOCK_GROWTHBOOK_API_KEY=<{key_state}>", highlight=False)
    out.print(f"rejects folder: {settings.resolved_rejects_dir()}", highlight=False)


def main() -> None:
    """Entry point: every Aftershock error becomes one line on stderr and exit code 1."""
    try:
        app()
    except AftershockError as exc:
        err.print(f"error: {exc}", style="red", highlight=False, soft_wrap=True)
        sys.exit(1)
