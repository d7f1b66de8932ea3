"""``make bench``: ingest throughput and memory on SQLite and PostgreSQL, printed as a table.

Each figure comes from a fresh process and a fresh database. PostgreSQL runs when
``AFTERSHOCK_BENCH_POSTGRES_URL`` (or ``AFTERSHOCK_TEST_POSTGRES_URL``) names a server.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from analytics.settings import normalise_database_url
from bench.data import CACHE, demo_csvs
from bench.evidently import evidently_python


@dataclass(frozen=True)
class Row:
    stage: str
    backend: str
    method: str
    rows: int
    seconds: float
    peak_mb: float
    target: str = ""
    met: str = ""

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@contextmanager
def database(backend: str, postgres_url: str | None) -> Iterator[str]:
    """A fresh, empty database for one measurement."""
    if backend == "sqlite":
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
            yield f"sqlite:///{Path(scratch) / 'bench.db'}"
        return
    assert postgres_url
    admin = sa.create_engine(normalise_database_url(postgres_url), isolation_level="AUTOCOMMIT")
    name = f"aftershock_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            sa.make_url(normalise_database_url(postgres_url))
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_module(module: str, *args: str) -> Any:
    """Run ``python -m bench.MODULE ARGS`` in a fresh process and return the JSON of the last
    line it prints; a failure raises with the end of its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args], capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"bench.{module} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(mode: str, url: str, path: Path, *extra: str) -> dict[str, float]:
    result: dict[str, float] = run_module("ingest", mode, url, str(path), *extra)
    return result


# Issue 15: interactions per second, by backend and text retention mode.
INGEST_TARGETS = {
    ("sqlite", "sample"): 150_000,
    ("sqlite", "all"): 100_000,
    ("postgres", "sample"): 100_000,
    ("postgres", "all"): 80_000,
}
PIPELINE_MAX_RATIO = 4.0  # ingest + analyze against pyarrow's parse of the same file
EVIDENTLY_MIN_SPEEDUP = 10.0  # ... and against the Evidently job (bench.evidently)


def bench_ingest(
    rows: int, naive_rows: int, backends: list[str], postgres_url: str | None
) -> list[Row]:
    path, _ = demo_csvs(rows)
    out = [ingest_stages(path)]
    for backend in backends:
        for store_text in ("sample", "all"):
            with database(backend, postgres_url) as url:
                real = measure("aftershock", url, path, store_text)
            rate = real["rows"] / real["seconds"]
            target = INGEST_TARGETS[backend, store_text]
            out.append(
                Row(
                    "ingest",
                    backend,
                    f"aftershock (text: {store_text})",
                    int(real["rows"]),
                    real["seconds"],
                    real["peak_mb"],
                    f">= {target:,}/s, < 1,024 MB",
                    f"rate {'yes' if rate >= target else 'no'}, "
                    f"memory {'yes' if real['peak_mb'] < 1024 else 'no'}",
                )
            )
        # The bound of any design that builds the indexes after a large load (a new table or
        # partition swapped in whole, say): the real ingest into the table without them.
        with database(backend, postgres_url) as url:
            bound = measure("aftershock-unindexed", url, path)
        out.append(
            Row(
                "ingest",
                backend,
                f"aftershock (text: sample) into the table without its indexes, built after "
                f"({bound['index_seconds']:.1f} s)",
                int(bound["rows"]),
                bound["seconds"],
                bound["peak_mb"],
            )
        )
        for indexes, label in (("kept", ""), ("after", ", indexes built after the load")):
            with database(backend, postgres_url) as url:
                ceiling = measure("ceiling", url, path, indexes)
            out.append(
                Row(
                    "ingest",
                    backend,
                    f"engine ceiling (no checks{label})",
                    int(ceiling["rows"]),
                    ceiling["seconds"],
                    ceiling["peak_mb"],
                )
            )
        with database(backend, postgres_url) as url:
            naive = measure("naive", url, path, str(naive_rows))
        scaled = naive["seconds"] * rows / naive["rows"]
        out.append(
            Row(
                "ingest",
                backend,
                f"naive ORM ({int(naive['rows']):,} rows, scaled)",
                rows,
                scaled,
                naive["peak_mb"],
            )
        )
    return out


def ingest_stages(path: Path) -> Row:
    """The CPU the ingest's own work takes, whatever the database (bench.ingest stages)."""
    stages = run_module("ingest", "stages", str(path))
    parts = {
        "whole-file check": stages["check_whole_file"],
        "read": stages["read"],
        "validate": stages["validate"],
        "deduplicate": stages["deduplicate"],
        "digests": stages["digests"],
        "features": stages["features"],
        "retention": stages["retention"],
    }
    common = sum(parts.values())
    listed = ", ".join(f"{name} {value:.1f}" for name, value in parts.items())
    return Row(
        "ingest",
        "-",
        f"its own work, no database (text: sample): {common:.1f} CPU s ({listed}); "
        f"then SQLite's chunk files {stages['prepare_sqlite']:.1f}, "
        f"PostgreSQL's CSV {stages['prepare_postgresql']:.1f}",
        int(stages["rows"]),
        stages["seconds"],
        stages["peak_mb"],
    )


def bench_pipeline(rows: int, backends: list[str], postgres_url: str | None) -> list[Row]:
    """From a log file to an answer (issue 15, item 4): Aftershock's ingest + analyze in one
    process, against pyarrow reading the same file and against the job a team would script
    with Evidently (bench.evidently, in a virtual environment of its own made on first use)."""
    interactions, exposures = demo_csvs(rows)
    evidently = json.loads(
        subprocess.run(
            [evidently_python(CACHE), "-m", "bench.evidently", str(interactions), str(exposures)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent.parent,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    parse = run_module("ingest", "parse", str(interactions))
    out = [
        Row(
            "pipeline",
            "-",
            "pyarrow.csv.read_csv of the file (types inferred)",
            int(parse["rows"]),
            parse["seconds"],
            parse["peak_mb"],
        ),
        Row(
            "pipeline",
            "-",
            "Evidently 0.7.23: pandas, arms joined, 14 text descriptors, DataDriftPreset",
            int(evidently["rows"]),
            evidently["seconds"],
            evidently["peak_mb"],
        ),
    ]
    for backend in backends:
        with database(backend, postgres_url) as url:
            run = run_module("ingest", "pipeline", url, str(interactions), str(exposures))
        parsed = run["seconds"] / parse["seconds"]
        faster = evidently["seconds"] / run["seconds"]
        met = (
            parsed <= PIPELINE_MAX_RATIO
            and faster >= EVIDENTLY_MIN_SPEEDUP
            and run["peak_mb"] < 1536
        )
        out.append(
            Row(
                "pipeline",
                backend,
                f"ingest + analyze (ingest {run['ingest_seconds']:.1f} s, "
                f"analyze {run['analyze_seconds']:.1f} s)",
                int(run["rows"]),
                run["seconds"],
                run["peak_mb"],
                f"<= {PIPELINE_MAX_RATIO:g}x read_csv, >= {EVIDENTLY_MIN_SPEEDUP:g}x faster "
                "than Evidently, < 1,536 MB",
                f"{parsed:.1f}x read_csv, {faster:.1f}x faster than Evidently: "
                f"{'yes' if met else 'no'}",
            )
        )
    return out


def bench_analyze(rows: int, backends: list[str], postgres_url: str | None) -> list[Row]:
    interactions, exposures = demo_csvs(rows)
    out = []
    for backend in backends:
        with database(backend, postgres_url) as url:
            result = measure("analyze", url, interactions, str(exposures))
        out.append(
            Row(
                "analyze",
                backend,
                f"aftershock ({rows:,} interactions)",
                int(result["rows"]),
                result["seconds"],
                result["peak_mb"],
                "<= 10 s, < 1,536 MB",
                f"time {'yes' if result['seconds'] <= 10 else 'no'}, "
                f"memory {'yes' if result['peak_mb'] < 1536 else 'no'}",
            )
        )
    return out


def bench_api(backends: list[str], postgres_url: str | None) -> list[Row]:
    """GET /v1/plans/{id}/ramp, 50 concurrent clients for 20 s (bench.api)."""
    out = []
    for backend in backends:
        for workers in (1, 2):
            with database(backend, postgres_url) as url:
                result = run_module("api", url, str(workers))
            ok = result["p99_ms"] <= 50 and result["errors"] == 0
            out.append(
                Row(
                    "api",
                    backend,
                    f"GET /ramp, 50 clients, {workers} worker(s), {result['client']}",
                    int(result["rows"]),
                    result["seconds"],
                    0.0,
                    "p99 <= 50 ms, no errors",
                    f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
                    f"{result['errors']} errors: {'yes' if ok else 'no'}",
                )
            )
    return out


def bench_dashboard(rows: int) -> list[Row]:
    """Each dashboard page's first render, caches cold, on SQLite (bench.dashboard)."""
    interactions, exposures = demo_csvs(rows)
    with database("sqlite", None) as url:
        times = run_module("dashboard", url, str(interactions), str(exposures))
    # Every page renders stored results within 2 s; the report page builds the newest week's
    # report when none is stored for this data, which the report's own target bounds.
    limits = {"report": 10.0}
    return [
        Row(
            "dashboard",
            "sqlite",
            f"page {page}, cold ({rows:,} interactions)",
            rows,
            seconds,
            0.0,
            f"<= {limits.get(page, 2.0):g} s",
            "yes" if seconds <= limits.get(page, 2.0) else "no",
        )
        for page, seconds in times.items()
    ]


def median_met(r: dict[str, Any], limit: float) -> str:
    """The "met" cell of a row timed over several runs: its median against ``limit``."""
    return (
        f"median {r['median_s']:.2f} s (min {r['min_s']:.2f}, max {r['max_s']:.2f}): "
        f"{'yes' if r['median_s'] <= limit else 'no'}"
    )


def bench_report(rows: int) -> list[Row]:
    """``aftershock report`` whole processes, on SQLite: the newest and a past week of
    ``rows`` interactions, first build and stored, and the demo's PDF (bench.report)."""
    interactions, exposures = demo_csvs(rows)
    with database("sqlite", None) as url, database("sqlite", None) as demo_url:
        run_module("report", "load", url, str(interactions), str(exposures))
        run_module("report", "demo", demo_url)
        results = run_module("report", "time", url, demo_url)
    out = []
    for case, r in results.items():
        data, what = case.split(": ", 1)
        limit = 3.0 if data == "demo" else 10.0
        size = "the demo, 3,000 users" if data == "demo" else f"{rows:,} interactions"
        out.append(
            Row(
                "report",
                "sqlite",
                f"{what} ({size}), median of {r['runs']} runs",
                r["runs"],
                r["median_s"],
                r["peak_mb"],
                f"<= {limit:g} s",
                median_met(r, limit),
            )
        )
    return out


def bench_cli(runs: int = 7) -> list[Row]:
    """Start-up of ``aftershock --help`` and ``aftershock status`` on SQLite (bench.cli)."""
    with database("sqlite", None) as url:
        results = run_module("cli", url, str(runs))
    return [
        Row(
            "cli",
            "sqlite",
            f"{command}, median of {r['runs']} runs after a warm-up",
            r["runs"],
            r["median_s"],
            r["peak_mb"],
            "<= 1 s",
            median_met(r, 1.0),
        )
        for command, r in results.items()
    ]


def bench_planner(users: int = 50_000, runs: int = 5) -> list[Row]:
    """The planner's search of the plan space on ``users`` treated users (bench.planner)."""
    r = run_module("planner", str(users), str(runs))
    return [
        Row(
            "planner",
            "-",
            f"search and cost {r['options']} options (bridge on), median of {r['runs']} runs",
            users,
            r["median_s"],
            0.0,
            "<= 5 s",
            median_met(r, 5.0),
        )
    ]


def bench_spark(rows: int, scales: tuple[int, ...] = (1, 10)) -> list[Row]:
    """``aftershock spark analyze`` in local mode on date-partitioned Parquet (bench.spark):
    ``rows`` demo interactions, then ten copies of them with new user ids (ten times the
    interactions and the users); session start and storing the run included."""
    out = []
    for scale in scales:
        lake = run_module("spark", "data", str(rows), str(scale))
        with database("sqlite", None) as url:
            r = run_module("spark", "run", lake["exposures"], lake["interactions"], url)
        out.append(
            Row(
                "spark",
                "local[*]",
                f"spark analyze, partitioned Parquet ({r['users']:,} users)",
                int(r["rows"]),
                r["seconds"],
                r["peak_mb"],
                "",
                f"session {r['session_s']:.0f} s, analysis {r['analysis_s']:.0f} s, store "
                f"{r['store_s']:.0f} s; collected {r['collected_mb']:,.0f} MB; JVM peak "
                f"{r['jvm_peak_mb']:,.0f} MB",
            )
        )
    return out


UNRATED = ("dashboard", "report", "cli", "planner")  # rows/s means nothing there


def render(rows: list[Row]) -> str:
    header = ["stage", "backend", "method", "rows", "seconds", "rows/s", "peak MB", "target", "met"]
    # For analyze, "rows" are the users analysed and rows/s users per second.
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(
            f"| {r.stage} | {r.backend} | {r.method} | {r.rows:,} | {r.seconds:.1f} | "
            f"{'-' if r.stage in UNRATED else f'{r.rate:,.0f}'} | "
            f"{'-' if not r.peak_mb else f'{r.peak_mb:,.0f}'} | {r.target} | {r.met} |"
        )
    return "\n".join(lines)


GROUPS = ["ingest", "pipeline", "analyze", "api", "dashboard", "report", "cli", "planner", "spark"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--naive-rows", type=int, default=20_000)
    parser.add_argument(
        "--only",
        choices=GROUPS,
        action="append",
        help="run only these",
    )
    args = parser.parse_args()
    postgres_url = os.environ.get("AFTERSHOCK_BENCH_POSTGRES_URL") or os.environ.get(
        "AFTERSHOCK_TEST_POSTGRES_URL"
    )
    backends = ["sqlite"] + (["postgres"] if postgres_url else [])
    only = set(args.only or GROUPS)
    results: list[Row] = []
    if "ingest" in only:
        results += bench_ingest(args.rows, args.naive_rows, backends, postgres_url)
    if "pipeline" in only:
        results += bench_pipeline(args.rows, backends, postgres_url)
    if "analyze" in only:
        results += bench_analyze(args.rows, backends, postgres_url)
    if "api" in only:
        results += bench_api(backends, postgres_url)
    if "dashboard" in only:
        results += bench_dashboard(args.rows)
    if "report" in only:
        results += bench_report(args.rows)
    if "cli" in only:
        results += bench_cli()
    if "planner" in only:
        results += bench_planner()
    if "spark" in only:
        results += bench_spark(args.rows)
    table = render(results)
    print(table)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "latest.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
