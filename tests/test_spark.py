"""``aftershock spark analyze``: the analysis on Spark (local mode) against the embedded path.

The Spark path must build the very frames the SQL loaders return (cohorts, per-user bins,
daily means, within-user moments) and so give the same analysis: the same users, cohorts,
effects, intervals, p-values and labels. Counts and integer sums are exact; ``latency_ms`` is
the one floating-point column summed, and Spark adds its values in another order than the
database, so its sums agree to about 1e-15 relative (checked to 1e-12), and what is computed
from them to 1e-9.

One local SparkSession serves the whole test session (per xdist worker).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from analytics.analysis.cohorts import load_cohorts
from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import load_analysis_frames, run_analysis
from analytics.analysis.user_periods import PeriodParams
from analytics.db import ensure_schema, get_engine
from analytics.demo import DemoConfig, generate_demo, write_demo
from analytics.errors import ConfigError, NotFoundError
from analytics.ingest.runner import ingest_file
from analytics.models import IngestKind
from analytics.store import load_analysis_users, load_latest_analysis
from analytics.timestamps import accepted_range
from rollout.cli.app import app
from tests.equivalence import assert_close, assert_results_match

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from analytics.spark.pipeline import SparkAnalysis

pytest.importorskip("pyspark", reason="PySpark is not installed (pip install 'aftershock[spark]')")

from analytics.spark.session import SparkTarget, build_session
from analytics.spark.sources import Source, resolve_source

EXPERIMENT = "chat-model-upgrade"
LATENCY_SUMS = ("latency_ms__sum", "latency_ms__sumsq")


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local session for the test session: two cores, few shuffle partitions."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime: Spark's local mode needs one (apt-get install default-jre)")
    session = build_session(
        SparkTarget(
            master="local[2]",
            conf=(
                ("spark.sql.shuffle.partitions", "4"),
                ("spark.default.parallelism", "2"),
                ("spark.ui.enabled", "false"),
            ),
        ),
        app_name="aftershock-tests",
    )
    yield session
    session.stop()


@dataclass(frozen=True)
class Demo:
    folder: Path
    url: str  # a SQLite database holding it, ingested by ``aftershock ingest``

    @property
    def engine(self) -> sa.Engine:
        return get_engine(self.url)

    def source(self, name: str, fmt: str = "parquet") -> Source:
        return resolve_source(str(self.folder / fmt / f"{name}.{fmt}"))


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """A 1,000-user demo as Parquet, CSV and JSON Lines, ingested (from Parquet) into SQLite."""
    folder = tmp_path_factory.mktemp("spark-demo")
    data = generate_demo(DemoConfig(n_users=1000, seed=23))
    paths = {fmt: write_demo(data, folder / fmt, fmt=fmt) for fmt in ("parquet", "csv", "jsonl")}
    url = f"sqlite:///{folder / 'demo.db'}"
    engine = get_engine(url)
    ensure_schema(engine)
    for kind in (IngestKind.exposures, IngestKind.interactions):
        ingest_file(paths["parquet"][kind.value], kind, engine=engine, rejects_dir=folder)
    return Demo(folder, url)


def analyse(
    spark: SparkSession,
    exposures: Source,
    interactions: Source,
    params: AnalysisParams | None = None,
    **options: Any,
) -> SparkAnalysis:
    from analytics.spark.pipeline import run_spark_analysis

    return run_spark_analysis(
        spark,
        params or AnalysisParams(EXPERIMENT),
        exposures,
        interactions,
        span=accepted_range(),
        **options,
    )


def assert_frames_match(
    spark_run: SparkAnalysis, engine: sa.Engine, params: AnalysisParams
) -> None:
    """The Spark path's frames are the SQL loaders' (rows in key order)."""
    sql = load_analysis_frames(engine, params)
    frames = spark_run.frames
    pd.testing.assert_frame_equal(frames.cohorts.users, sql.cohorts.users, check_exact=True)
    assert frames.cohorts.variations == sql.cohorts.variations
    assert frames.cohorts.multiple_exposures == sql.cohorts.multiple_exposures
    bins = sql.bins.sort_values(["user_id", "bin"]).reset_index(drop=True)
    exact = [c for c in bins.columns if c not in LATENCY_SUMS]
    pd.testing.assert_frame_equal(frames.bins[exact], bins[exact], check_exact=True)
    pd.testing.assert_frame_equal(
        frames.bins[list(LATENCY_SUMS)], bins[list(LATENCY_SUMS)], check_exact=False, rtol=1e-12
    )
    daily = sql.daily
    pd.testing.assert_frame_equal(
        frames.daily.drop(columns="latency_ms"), daily.drop(columns="latency_ms"), check_exact=True
    )
    pd.testing.assert_series_equal(
        frames.daily["latency_ms"], daily["latency_ms"], check_exact=False, rtol=1e-12
    )
    moments = sql.moments.sort_values(["user_id", "post"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(frames.moments, moments, check_exact=True)


@pytest.mark.slow
def test_spark_and_embedded_paths_give_the_same_analysis(spark: SparkSession, demo: Demo) -> None:
    params = AnalysisParams(EXPERIMENT)
    ours = analyse(spark, demo.source("exposures"), demo.source("interactions"), params)
    theirs = run_analysis(demo.engine, params)

    assert_frames_match(ours, demo.engine, params)
    assert_results_match(ours.result, theirs)
    document = ours.document()
    assert document.adaptation.labels["adapted"] > 0  # the demo's story is there to compare
    assert ours.counts.interactions_rejected == ours.counts.interactions_duplicate == 0


@pytest.mark.slow
def test_as_of_and_pre_days_windows_match_the_sql(spark: SparkSession, demo: Demo) -> None:
    cohorts = load_cohorts(demo.engine, EXPERIMENT)
    middle = cohorts.users["first_exposure"].median().to_pydatetime()
    params = AnalysisParams(EXPERIMENT, periods=PeriodParams(pre_days=5.5, until=middle))
    ours = analyse(spark, demo.source("exposures"), demo.source("interactions"), params)

    assert_frames_match(ours, demo.engine, params)
    assert_results_match(ours.result, run_analysis(demo.engine, params))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_formats_read_as_ingest_reads_them(spark: SparkSession, demo: Demo, fmt: str) -> None:
    params = AnalysisParams(EXPERIMENT)
    ours = analyse(spark, demo.source("exposures", fmt), demo.source("interactions", fmt), params)
    assert_frames_match(ours, demo.engine, params)


@pytest.mark.slow
def test_rows_ingest_rejects_or_stores_once_are_dropped_and_counted_alike(
    spark: SparkSession, demo: Demo, tmp_path: Path
) -> None:
    """The same CSV, with rows breaking the contract, a repeated row and an identifier with
    white space around it: Spark drops and counts what ingest rejects and stores once."""
    interactions = pq.read_table(demo.folder / "parquet" / "interactions.parquet")
    first = interactions.slice(0, 1).to_pylist()[0]
    extra = [
        first,  # the same interaction again: stored once
        {**first, "event_id": "bad-feedback", "feedback": 7},
        {**first, "event_id": "no-user", "user_id": ""},
        {**first, "event_id": "bad-time", "timestamp": "yesterday"},
        {**first, "event_id": "epoch-seconds", "timestamp": "1790000000"},
        {**first, "event_id": "padded", "user_id": f" {first['user_id']} "},  # the user's
    ]
    path = tmp_path / "interactions.csv"
    both = pa.concat_tables([interactions, pa.Table.from_pylist(extra, schema=interactions.schema)])
    pa_csv.write_csv(both, path)
    engine = get_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ensure_schema(engine)
    exposures = demo.folder / "parquet" / "exposures.parquet"
    ingest_file(exposures, IngestKind.exposures, engine=engine, rejects_dir=tmp_path)
    summary = ingest_file(path, IngestKind.interactions, engine=engine, rejects_dir=tmp_path)
    assert (summary.rows_rejected, summary.rows_duplicate) == (4, 1)

    params = AnalysisParams(EXPERIMENT)
    ours = analyse(spark, resolve_source(str(exposures)), resolve_source(str(path)), params)

    assert ours.counts.interactions_read == summary.rows_read
    assert ours.counts.interactions_rejected == summary.rows_rejected
    assert ours.counts.interactions_duplicate == summary.rows_duplicate
    assert_frames_match(ours, engine, params)


def _replicated(table: pa.Table, times: int) -> pa.Table:
    """``times`` copies of every interaction (new event ids, same user, instant and text), the
    timestamps as a Parquet timestamp column."""
    instants = pd.to_datetime(table.column("timestamp").to_pandas(), utc=True, format="ISO8601")
    typed = table.set_column(
        table.schema.get_field_index("timestamp"),
        "timestamp",
        pa.array(instants, type=pa.timestamp("us", tz="UTC")),
    )
    copies = []
    for copy in range(times):
        ids = pc.binary_join_element_wise(typed.column("event_id"), pa.scalar(f"{copy}"), "-r")
        copies.append(typed.set_column(0, "event_id", ids))
    return pa.concat_tables(copies)


def _peak_growth_mib(run: Callable[[], object]) -> float:
    """How far this (the driver's Python) process's resident memory rose above where it
    started while ``run`` ran: its peak, reset first (Linux ``clear_refs``)."""
    status = Path("/proc/self/status")

    def field(name: str) -> float:
        for line in status.read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1]) / 1024
        raise LookupError(name)

    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = field("VmRSS:")
    run()
    return field("VmHWM:") - before


@pytest.mark.slow
def test_the_driver_collects_per_user_sums_not_interactions(
    spark: SparkSession, demo: Demo, tmp_path: Path
) -> None:
    """N and 4N interactions of the same users: the same frames reach the driver (rows and
    bytes), and the driver's memory does not rise with the interactions."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure peak memory")
    interactions = pq.read_table(demo.folder / "parquet" / "interactions.parquet")
    for times in (1, 4):
        pq.write_table(_replicated(interactions, times), tmp_path / f"x{times}.parquet")
    exposures = demo.source("exposures")
    params = AnalysisParams(EXPERIMENT)
    runs: dict[int, SparkAnalysis] = {}

    def run(times: int) -> None:
        runs[times] = analyse(
            spark, exposures, resolve_source(str(tmp_path / f"x{times}.parquet")), params
        )

    run(1)  # warm: the first run in a process loads what every later one uses
    growth = {times: _peak_growth_mib(lambda times=times: run(times)) for times in (1, 4)}

    one, four = runs[1], runs[4]
    assert four.counts.interactions_read == 4 * one.counts.interactions_read
    assert four.collected.rows == one.collected.rows
    assert four.collected.bytes == one.collected.bytes
    assert one.collected.total_bytes < 4 << 20  # ~1,000 users: a few MiB
    assert (four.frames.bins["n"] == 4 * one.frames.bins["n"]).all()
    assert_frames_match(one, demo.engine, params)  # native timestamps read as ingest reads them
    # Four times the interactions (46 MiB more of text) and no more driver memory.
    assert growth[4] < growth[1] + 32, growth


# --- the command line ------------------------------------------------------------------------


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["spark", "analyze", *args])
    return result.exit_code, result.stdout, result.stderr


def test_sources_are_resolved_before_spark_starts(tmp_path: Path) -> None:
    folder = tmp_path / "logs" / "day=2026-10-01"
    folder.mkdir(parents=True)
    (folder / "part-0.snappy.parquet").write_bytes(b"")
    (tmp_path / "logs" / "_SUCCESS").write_bytes(b"")
    (tmp_path / "a.csv.gz").write_bytes(b"")
    (tmp_path / "delta" / "_delta_log").mkdir(parents=True)

    assert resolve_source(str(tmp_path / "logs")).format == "parquet"
    assert resolve_source(str(tmp_path / "a.csv.gz")).format == "csv"
    assert resolve_source(str(tmp_path / "delta")).format == "delta"
    assert resolve_source("lake.interactions") == Source("lake.interactions", "table")
    assert resolve_source("s3a://bucket/logs.jsonl").format == "jsonl"
    assert resolve_source("anything", "table").format == "table"
    with pytest.raises(NotFoundError, match="no such file"):
        resolve_source(str(tmp_path / "missing.parquet"))
    with pytest.raises(ConfigError, match="cannot tell the format"):
        resolve_source("s3a://bucket/logs")
    with pytest.raises(ConfigError, match="--format 'xml'"):
        resolve_source(str(tmp_path / "a.csv.gz"), "xml")


def test_refused_options_exit_1_with_one_line(cli_env: str, demo: Demo) -> None:
    interactions = str(demo.folder / "parquet" / "interactions.parquet")
    cases = [
        (["--exposures", "/nowhere/e.parquet"], "/nowhere/e.parquet: no such file or folder"),
        (["--exposures", interactions, "--format", "xml"], "--format 'xml': use one of"),
        (["--exposures", interactions, "--conf", "nonsense"], "--conf 'nonsense'"),
        (["--exposures", interactions, "--remote", "sc://h", "--master", "yarn"], "give one"),
    ]
    for args, message in cases:
        code, _, err = run_cli("--experiment", EXPERIMENT, "--interactions", interactions, *args)
        assert code == 1
        assert err.strip().startswith("error: ") and message in err, err
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_unknown_experiment_and_missing_columns_exit_1_with_one_line(
    cli_env: str, spark: SparkSession, demo: Demo, tmp_path: Path
) -> None:
    exposures = str(demo.folder / "parquet" / "exposures.parquet")
    interactions = str(demo.folder / "parquet" / "interactions.parquet")
    code, _, err = run_cli(
        "--experiment",
        "chat-model-upgrde",
        "--exposures",
        exposures,
        "--interactions",
        interactions,
    )
    assert code == 1
    assert err.strip() == (
        f"error: experiment 'chat-model-upgrde' has no exposures in {exposures}; "
        "did you mean 'chat-model-upgrade'?"
    )
    bad = tmp_path / "exposures.csv"
    bad.write_text("user,when\nu1,2026-10-01\n")
    code, _, err = run_cli(
        "--experiment", EXPERIMENT, "--exposures", str(bad), "--interactions", interactions
    )
    assert code == 1
    assert err.strip() == f"error: {bad}, column user_id: missing required column 'user_id'"


@pytest.mark.slow
def test_the_command_writes_the_files_and_stores_a_run(
    cli_env: str, spark: SparkSession, demo: Demo, tmp_path: Path
) -> None:
    out, features = tmp_path / "out", tmp_path / "features"
    code, stdout, err = run_cli(
        "--experiment", EXPERIMENT,
        "--exposures", str(demo.folder / "csv" / "exposures.csv"),
        "--interactions", str(demo.folder / "parquet" / "interactions.parquet"),
        "--master", "local[2]",
        "--out", str(out),
        "--features-out", str(features),
    )  # fmt: skip
    assert code == 0, err
    assert "0 rejected" in stdout and "collected" in stdout, stdout
    document = json.loads((out / "analysis.json").read_text())
    users = pd.read_csv(out / "users.csv")
    stored = load_latest_analysis(get_engine(cli_env), EXPERIMENT)
    assert stored is not None
    assert stored.document.to_json() == document
    assert stored.parameters["source"]["engine"] == "spark"
    assert len(load_analysis_users(get_engine(cli_env), stored.id)) == len(users)
    reference = run_analysis(demo.engine, AnalysisParams(EXPERIMENT))
    assert_close(document, reference.document().to_json())
    written = pq.read_table(features)
    assert (
        written.num_rows
        == pq.read_metadata(demo.folder / "parquet" / "interactions.parquet").num_rows
    )
    assert {"prompt_length", "has_hedge", "timestamp"} <= set(written.column_names)
    assert "prompt" not in written.column_names  # features, never the text


def test_help_does_not_import_pyspark() -> None:
    probe = (
        "import sys, rollout.cli.app, typer.main; typer.main.get_command(rollout.cli.app.app); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_spark_connect_runs_the_same_analysis(demo: Demo, tmp_path: Path) -> None:
    """``--remote``: through Spark Connect (a local server, started in a process of its own),
    the same analysis is stored."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime: Spark's local mode needs one (apt-get install default-jre)")
    url = f"sqlite:///{tmp_path / 'connect.db'}"
    script = Path(sys.executable).with_name("aftershock")
    command = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from rollout.cli.app import main; main()"]
    )
    done = subprocess.run(
        [
            *command, "spark", "analyze", "--experiment", EXPERIMENT,
            "--exposures", str(demo.folder / "parquet" / "exposures.parquet"),
            "--interactions", str(demo.folder / "jsonl" / "interactions.jsonl"),
            "--remote", "local[2]", "--conf", "spark.sql.shuffle.partitions=4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "AFTERSHOCK_DATABASE_URL": url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    stored = load_latest_analysis(get_engine(url), EXPERIMENT)
    assert stored is not None
    reference = run_analysis(demo.engine, AnalysisParams(EXPERIMENT))
    assert_close(stored.document.to_json(), reference.document().to_json())
