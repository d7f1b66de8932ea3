"""``aftershock spark analyze``: the analysis of ``aftershock analyze`` on Apache Spark, over
exposures and interaction logs that stay where they are (Parquet, JSON Lines, CSV, a table).

PySpark is imported when the command runs, never by ``aftershock --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rollout.cli.analysis import (
    AsOf,
    Control,
    MinPost,
    MinPre,
    OutDir,
    PreDays,
    Weights,
    _print_analysis,
    analysis_options,
    write_outputs,
)
from rollout.cli.console import out, reports_errors

if TYPE_CHECKING:
    from analytics.spark.pipeline import SparkAnalysis


@reports_errors
def analyze(
    experiment: Annotated[str, typer.Option("--experiment", help="GrowthBook experiment key.")],
    exposures: Annotated[
        str,
        typer.Option(
            "--exposures",
            help="Exposures: a Parquet, JSON Lines or CSV file or folder, a URL Spark reads "
            "(s3a://...), or a table name.",
        ),
    ],
    interactions: Annotated[
        str, typer.Option("--interactions", help="Interaction logs, as --exposures.")
    ],
    file_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="parquet, csv, jsonl, orc, delta or table, for both sources (default: from "
            "the names).",
        ),
    ] = None,
    master: Annotated[
        str | None,
        typer.Option(
            help="Spark master: local[*], spark://HOST:7077, yarn, k8s://... (default: "
            "spark-submit's when run by it, else local[*])."
        ),
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option(help="Spark Connect server, e.g. sc://HOST:15002 (instead of --master)."),
    ] = None,
    conf: Annotated[
        list[str] | None,
        typer.Option("--conf", help="A Spark setting KEY=VALUE (repeatable)."),
    ] = None,
    out_dir: OutDir = None,
    features_out: Annotated[
        str | None,
        typer.Option(
            "--features-out",
            help="Also write every valid interaction's features here as Parquet (a new folder).",
        ),
    ] = None,
    control: Control = "0",
    weights: Weights = None,
    min_pre: MinPre = 3,
    min_post: MinPost = 3,
    pre_days: PreDays = 28.0,
    as_of: AsOf = None,
) -> None:
    """Analyse an experiment on Spark, from logs in a lake; stored like `aftershock analyze`."""
    from analytics.analysis.pipeline import users_table
    from analytics.db import ensure_schema, get_engine
    from analytics.errors import ConfigError
    from analytics.spark.session import SparkTarget, build_session, parse_conf
    from analytics.spark.sources import resolve_source
    from analytics.store import save_analysis
    from analytics.timestamps import accepted_range

    options = analysis_options(control, weights, min_pre, min_post, pre_days, as_of)
    if remote is not None and master is not None:
        raise ConfigError("--master and --remote: give one (--remote is Spark Connect)")
    # Everything that can be refused without Spark is refused before it starts.
    sources = resolve_source(exposures, file_format), resolve_source(interactions, file_format)
    target = SparkTarget(
        master=master, remote=remote, conf=parse_conf(conf or []), progress=sys.stderr.isatty()
    )
    engine = get_engine()
    ensure_schema(engine)
    from analytics.spark.pipeline import build_spark_params, run_spark_analysis

    params = build_spark_params(engine, experiment, **options)
    spark = build_session(target)
    run = run_spark_analysis(
        spark, params, *sources, span=accepted_range(), features_out=features_out
    )
    run_id = save_analysis(engine, run)
    document = run.document()
    write_outputs(out_dir, document, users_table(run.result))
    _print_counts(run, target.describe(), features_out)
    _print_analysis(document, run_id, out_dir)


def _print_counts(run: SparkAnalysis, where: str, features_out: str | None) -> None:
    counts = run.counts
    out.print(
        f"spark ({where}): exposures {counts.exposures_read:,} read, "
        f"{counts.exposures_rejected:,} rejected; interactions {counts.interactions_read:,} "
        f"read, {counts.interactions_rejected:,} rejected, "
        f"{counts.interactions_duplicate:,} repeated; collected "
        f"{run.collected.total_bytes / 2**20:,.1f} MiB to the driver",
        highlight=False,
        soft_wrap=True,
    )
    if features_out is not None:
        out.print(f"wrote the interactions' features to {features_out}", highlight=False)


if __name__ == "__main__":
    # spark-submit runs a Python file, not a console script:
    #   spark-submit [spark options] .../rollout/cli/spark.py --experiment ID --exposures ...
    # Python put this file's folder first on the path, where its modules would shadow others'.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    from rollout.cli.app import main

    sys.argv[1:1] = ["spark", "analyze"]
    main()
