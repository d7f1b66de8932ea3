"""``aftershock analyze`` (drift, style shift, per-user adaptation) and ``aftershock status``
(what the database holds)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from rollout.cli.console import out, reports_errors

if TYPE_CHECKING:
    from analytics.documents import AnalysisDocument
    from analytics.inference.results import DriftRow, StyleShiftRow


# The options shared with ``aftershock spark analyze`` (rollout/cli/spark.py).
OutDir = Annotated[
    Path | None, typer.Option("--out", help="Write analysis.json and users.csv here.")
]
Control = Annotated[str, typer.Option(help="The control variation.")]
Weights = Annotated[
    str | None,
    typer.Option(
        help="Expected split for the SRM check, e.g. 0.5,0.5 (default: from `aftershock "
        "growthbook pull`, else equal)."
    ),
]
MinPre = Annotated[int, typer.Option(min=1, help="Interactions needed before exposure.")]
MinPost = Annotated[int, typer.Option(min=1, help="Interactions needed after it.")]
PreDays = Annotated[float, typer.Option(min=1, help="Days of pre-period to use.")]
AsOf = Annotated[
    datetime | None,
    typer.Option(
        "--as-of",
        help="Analyse the data as it stood at this UTC time (exposures and logs before it).",
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
    ),
]


def analysis_options(
    control: str,
    weights: str | None,
    min_pre: int,
    min_post: int,
    pre_days: float,
    as_of: datetime | None,
) -> dict[str, Any]:
    """The shared options as the keyword arguments of ``build_analysis_params`` (and of the
    Spark path's ``build_spark_params``)."""
    from analytics.analysis.adaptation import AdaptationParams
    from analytics.analysis.user_periods import PeriodParams

    split = None
    if weights:
        try:
            split = tuple(float(w) for w in weights.split(","))
        except ValueError as exc:
            raise typer.BadParameter(
                f"not a list of numbers: {weights!r}", param_hint="--weights"
            ) from exc
    return {
        "control": control,
        "weights": split,
        "periods": PeriodParams(
            pre_days=pre_days, until=None if as_of is None else as_of.replace(tzinfo=UTC)
        ),
        "adaptation": AdaptationParams(min_pre=min_pre, min_post=min_post),
    }


def write_outputs(out_dir: Path | None, document: AnalysisDocument, users: Any) -> None:
    """analysis.json and users.csv into ``out_dir`` (when given)."""
    if out_dir is None:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "analysis.json").write_text(json.dumps(document.to_json(), indent=2) + "\n")
    users.to_csv(out_dir / "users.csv", index=False)


@reports_errors
def analyze(
    experiment: Annotated[str, typer.Option("--experiment", help="GrowthBook experiment key.")],
    out_dir: OutDir = None,
    control: Control = "0",
    weights: Weights = None,
    min_pre: MinPre = 3,
    min_post: MinPost = 3,
    pre_days: PreDays = 28.0,
    as_of: AsOf = None,
) -> None:
    """Analyse an experiment: behaviour drift, style shift, per-user adaptation."""
    from analytics.analysis.params import build_analysis_params
    from analytics.analysis.pipeline import run_analysis, users_table
    from analytics.db import ensure_schema, get_engine
    from analytics.store import save_analysis

    options = analysis_options(control, weights, min_pre, min_post, pre_days, as_of)
    engine = get_engine()
    ensure_schema(engine)
    params = build_analysis_params(engine, experiment, **options)
    result = run_analysis(engine, params)
    run_id = save_analysis(engine, result)
    document = result.document()
    write_outputs(out_dir, document, users_table(result))
    _print_analysis(document, run_id, out_dir)


def _print_analysis(document: AnalysisDocument, run_id: int, out_dir: Path | None) -> None:
    srm = document.srm
    out.print(
        f"analysis {run_id} of {document.experiment_id}: users "
        + ", ".join(f"{v}={n:,}" for v, n in document.users.items())
        + f"; multiple exposures {document.multiple_exposures}; "
        + (
            f"SRM not tested ({srm.error})"
            if srm.error
            else f"SRM p={srm.p_value:.4g} ({'ok' if srm.ok else 'MISMATCH'})"
        ),
        highlight=False,
        soft_wrap=True,
    )
    tables: tuple[tuple[str, Sequence[DriftRow | StyleShiftRow], str], ...] = (
        ("Behaviour drift", document.behavior_drift, "effect"),
    )
    for title, rows, effect in tables:
        table = Table("metric", "variation", effect, "95% CI", "q", title=title)
        for row in rows:
            value = getattr(row, effect)
            table.add_row(
                row.metric,
                row.variation,
                "-" if value is None else f"{value:+.4g}",
                "-" if row.ci_low is None else f"[{row.ci_low:.3g}, {row.ci_high:.3g}]",
                "-"
                if row.q_value is None
                else f"{row.q_value:.2g}" + (" *" if row.significant else ""),
            )
        out.print(table)
    out.print(_style_table(document.style_shift))
    adaptation = document.adaptation
    half_life = adaptation.half_life_days
    out.print(
        "adaptation of treated users: "
        + ", ".join(f"{k} {v:,}" for k, v in adaptation.labels.items())
        + f"; half-life {'n/a' if half_life is None else f'{half_life:.1f} days'}",
        highlight=False,
        soft_wrap=True,
    )
    _print_scoring(document)
    if out_dir is not None:
        out.print(f"wrote {out_dir / 'analysis.json'} and {out_dir / 'users.csv'}", highlight=False)


def _print_scoring(document: AnalysisDocument) -> None:
    """How the treated users were scored, why the others were not, and, when nobody could
    be, what scoring needs."""
    from analytics.analysis.adaptation import FOLDS, MIN_CONTROLS_PER_FOLD
    from analytics.documents import UNSCORED_REASONS

    adaptation = document.adaptation
    methods = [f"{m} {n:,}" for m, n in adaptation.methods.items() if n]
    if methods:
        out.print("  scored by " + ", ".join(methods), highlight=False, soft_wrap=True)
    for reason, n in adaptation.unscored.items():
        if n:
            words = UNSCORED_REASONS.get(reason, reason)
            out.print(f"  not scored: {n:,} {reason} ({words})", highlight=False, soft_wrap=True)
    if adaptation.scored_users == 0 and adaptation.unscored_users > 0:
        out.print(
            "  nobody could be scored: each method needs at least "
            f"{MIN_CONTROLS_PER_FOLD * FOLDS} eligible control users ({MIN_CONTROLS_PER_FOLD} "
            f"per cross-fitting fold, {FOLDS} folds) and a treatment variation",
            highlight=False,
            soft_wrap=True,
        )


def _style_table(rows: Sequence[StyleShiftRow]) -> Table:
    """The style shift: all randomised users between arms (q is its), then the DiD."""
    table = Table(
        "metric",
        "variation",
        "effect",
        "95% CI",
        "q",
        "DiD",
        "DiD 95% CI",
        title="Prompt-style shift (effect: all users, between arms; DiD: users with both periods)",
    )

    def interval(low: float | None, high: float | None) -> str:
        return "-" if low is None or high is None else f"[{low:.3g}, {high:.3g}]"

    for row in rows:
        table.add_row(
            row.metric,
            row.variation,
            "-" if row.effect is None else f"{row.effect:+.4g}",
            interval(row.ci_low, row.ci_high),
            "-"
            if row.q_value is None
            else f"{row.q_value:.2g}" + (" *" if row.significant else ""),
            "-" if row.did is None else f"{row.did:+.4g}",
            interval(row.did_ci_low, row.did_ci_high),
        )
    return table


def status() -> None:
    """What the database holds: rows per table, experiments, the last ingests."""
    from analytics.db import get_engine
    from analytics.summary import load_database_summary

    engine = get_engine()
    summary = load_database_summary(engine)
    out.print(f"database: {engine.url.render_as_string(hide_password=True)}", highlight=False)
    for name, count in summary.row_counts.items():
        out.print(f"  {name}: {count:,}", highlight=False)
    if summary.experiments:
        table = Table("experiment", "variation", "users", title="Experiments")
        for experiment, variation, users in summary.experiments:
            table.add_row(experiment, variation, f"{users:,}")
        out.print(table)
    if summary.last_ingests:
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
        for run in summary.last_ingests:
            table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in run))
        out.print(table)
