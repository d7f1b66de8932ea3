"""``aftershock spark analyze`` in local mode: wall time and memory, one measurement per process.

``python -m bench.spark data ROWS [SCALE]`` writes (once; cached in bench/results/) the demo
experiment as date-partitioned Parquet, as a lake holds it: ``ROWS`` demo interactions (native
timestamp column) and their exposures, the whole repeated ``SCALE`` times with new user and
event ids (so 10 x 1,000,000 rows is ten times the users). It prints the two folders as JSON.

``python -m bench.spark run EXPOSURES INTERACTIONS URL [MASTER]`` runs what the command runs
(session start, checks and features, cohorts and sums, inference, storing the run in ``URL``)
and prints one JSON line: seconds in all and per step, interactions read, users analysed, the
driver's peak memory (this Python process: what is collected and the inference), the JVM's
(in local mode the JVM is Spark's driver and executors together) and the bytes collected.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from bench.data import CACHE, INTERACTIONS_PER_USER
from bench.ingest import peak_mb

EXPERIMENT = "chat-model-upgrade"
# Local mode's one JVM is the driver and the executors: Spark's default (1 GiB) is too small to
# hold ten million rows' shuffles and the per-user sums of half a million users.
DRIVER_MEMORY = "6g"


def lake(rows: int, scale: int = 1, seed: int = 11) -> tuple[Path, Path]:
    """The demo experiment as date-partitioned Parquet folders: (exposures, interactions)."""
    from analytics.demo import DemoConfig, generate_demo

    root = CACHE / f"spark-lake-{rows}x{scale}-{seed}"
    exposures, interactions = root / "exposures", root / "interactions"
    if (root / "_COMPLETE").exists():
        return exposures, interactions
    users = math.ceil(rows / INTERACTIONS_PER_USER * 1.05)
    data = generate_demo(DemoConfig(n_users=users, seed=seed))
    if data.interactions.num_rows < rows:
        raise RuntimeError(f"the demo made {data.interactions.num_rows} rows, fewer than {rows}")
    tables = {
        exposures: _typed(data.exposures),
        interactions: _typed(data.interactions.slice(0, rows)),
    }
    for folder, table in tables.items():
        for copy in range(scale):
            ds.write_dataset(
                _renamed(table, copy) if copy else table,
                folder,
                format="parquet",
                partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
                basename_template=f"part-{copy}-{{i}}.parquet",
                existing_data_behavior="overwrite_or_ignore",
                max_rows_per_group=200_000,
            )
    (root / "_COMPLETE").write_text("")
    return exposures, interactions


def _typed(table: pa.Table) -> pa.Table:
    """ISO-8601 text timestamps as a timestamp column, and the UTC day to partition by."""
    text = table.column("timestamp")
    instants = pc.cast(
        pc.strptime(pc.utf8_slice_codeunits(text, 0, 19), format="%Y-%m-%dT%H:%M:%S", unit="s"),
        pa.timestamp("us"),
    )
    # The demo's instants carry milliseconds: add them back.
    millis = pc.cast(pc.utf8_slice_codeunits(text, 20, 23), pa.int64())
    stamped = pc.add(pc.cast(instants, pa.int64()), pc.multiply(millis, 1000))
    stamped = pc.cast(pc.cast(stamped, pa.timestamp("us")), pa.timestamp("us", tz="UTC"))
    table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", stamped)
    return table.append_column("date", pc.utf8_slice_codeunits(text, 0, 10))


def _renamed(table: pa.Table, copy: int) -> pa.Table:
    """Another ``copy`` of the population: new user ids (and event ids)."""
    for name in ("user_id", "event_id"):
        if name in table.column_names:
            renamed = pc.binary_join_element_wise(pa.scalar(f"r{copy}"), table.column(name), "-")
            table = table.set_column(table.schema.get_field_index(name), name, renamed)
    return table


def run(exposures: Path, interactions: Path, url: str, master: str) -> dict[str, float]:
    from analytics.analysis.params import AnalysisParams
    from analytics.db import ensure_schema, get_engine
    from analytics.spark.pipeline import run_spark_analysis
    from analytics.spark.session import SparkTarget, build_session
    from analytics.spark.sources import resolve_source
    from analytics.store import save_analysis
    from analytics.timestamps import accepted_range

    start = time.perf_counter()
    settings = (("spark.ui.enabled", "false"), ("spark.driver.memory", DRIVER_MEMORY))
    spark = build_session(SparkTarget(master=master, conf=settings))
    started = time.perf_counter()
    result = run_spark_analysis(
        spark,
        AnalysisParams(EXPERIMENT),
        resolve_source(str(exposures)),
        resolve_source(str(interactions)),
        span=accepted_range(),
    )
    analysed = time.perf_counter()
    engine = get_engine(url)
    ensure_schema(engine)
    save_analysis(engine, result)
    end = time.perf_counter()
    jvm_peak = _jvm_peak_mb(spark)
    spark.stop()
    return {
        "rows": result.counts.interactions_read,
        "users": len(result.users),
        "seconds": end - start,
        "session_s": started - start,
        "analysis_s": analysed - started,
        "store_s": end - analysed,
        "peak_mb": peak_mb(),
        "jvm_peak_mb": jvm_peak,
        "collected_mb": result.collected.total_bytes / 2**20,
    }


def _jvm_peak_mb(spark: object) -> float:
    """The local JVM's peak resident memory (0 when it is not on this machine)."""
    try:
        pid = spark._jvm.ProcessHandle.current().pid()  # type: ignore[attr-defined]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except Exception:
        pass
    return 0.0


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "data":
        rows, scale = int(args[0]), int(args[1]) if len(args) > 1 else 1
        exposures, interactions = lake(rows, scale)
        print(json.dumps({"exposures": str(exposures), "interactions": str(interactions)}))
    elif mode == "run":
        master = args[3] if len(args) > 3 else "local[*]"
        print(json.dumps(run(Path(args[0]), Path(args[1]), args[2], master)))
    else:
        raise SystemExit(f"unknown mode {mode!r}: data or run")


if __name__ == "__main__":
    main()
