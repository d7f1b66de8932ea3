"""Seconds of ``aftershock report``, whole processes as a user runs them.

``python -m bench.report load URL INTERACTIONS EXPOSURES`` loads the logs into the empty
database at URL with an analysis and a rollback plan (as ``bench.dashboard`` does); ``demo
URL`` loads the ``make run`` demo (3,000 users) likewise. ``time URL [DEMO_URL]`` then times
the report of the newest complete week and of the week two before it, each built first (the
report snapshots deleted before every run: the analyses run) and then from what is stored, as
HTML and PDF; and, with DEMO_URL, the demo's PDF, which has its own target. Prints one JSON
line: {case: {"runs", "median_s", "min_s", "max_s", "peak_mb"}}.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from analytics.db import get_engine
from analytics.demo import DemoConfig, generate_demo, write_demo
from analytics.store import data_end, load_exposure_span
from bench.cli import aftershock, run_once, summarise
from bench.data import load_planned_rollback
from rollout.report.model import IsoWeek
from rollout.report.weeks import last_complete_week

EXPERIMENT = "chat-model-upgrade"


def forget_snapshots(url: str) -> None:
    """Delete the report snapshots: the next report runs its analyses again."""
    with get_engine(url).begin() as connection:
        connection.execute(sa.text("DELETE FROM analysis_runs WHERE purpose = 'report_snapshot'"))


def weeks(url: str) -> tuple[IsoWeek, IsoWeek]:
    """The newest complete week with data, and the week two before it."""
    engine = get_engine(url)
    span = load_exposure_span(engine, EXPERIMENT)
    assert span is not None
    newest = last_complete_week(
        EXPERIMENT, span[0], data_end(engine, EXPERIMENT), datetime.now(UTC)
    )
    return newest, newest.previous().previous()


def timed(
    url: str, week: IsoWeek, suffix: str, runs: int, before: Callable[[], None] | None = None
) -> dict[str, float]:
    """``runs`` reports of ``week`` as ``suffix`` (``before`` called ahead of each run, untimed)."""
    env = {**os.environ, "AFTERSHOCK_DATABASE_URL": url}
    times = []
    with tempfile.TemporaryDirectory() as scratch:
        args = ["report", "--experiment", EXPERIMENT, "--week", week.label]
        for _ in range(runs):
            if before:
                before()
            out = ["--out", str(Path(scratch) / f"report{suffix}")]
            times.append(run_once([*aftershock(), *args, *out], env, Path(scratch)))
    return summarise(times)


def bench_database(url: str, runs: int) -> dict[str, dict[str, float]]:
    newest, past = weeks(url)
    out = {}
    for name, week in (("newest", newest), ("past", past)):
        out[f"{name} week {week.label}, first build, html"] = timed(
            url, week, ".html", runs, lambda: forget_snapshots(url)
        )
        for suffix in (".html", ".pdf"):
            timed(url, week, suffix, 1)  # warm-up: the browser's and the file cache
            out[f"{name} week {week.label}, stored, {suffix[1:]}"] = timed(url, week, suffix, runs)
    return out


def load_demo(url: str) -> None:
    """The ``make run`` demo (3,000 users), its analysis and plan, into the empty database."""
    with tempfile.TemporaryDirectory() as scratch:
        paths = write_demo(generate_demo(DemoConfig(n_users=3000, seed=7)), Path(scratch))
        load_planned_rollback(url, paths["interactions"], paths["exposures"])


def time_reports(url: str, demo_url: str | None) -> dict[str, dict[str, float]]:
    results = {f"logs: {k}": v for k, v in bench_database(url, 3).items()}
    if demo_url:
        newest, _ = weeks(demo_url)
        timed(demo_url, newest, ".pdf", 1)  # builds and stores the week's snapshots
        results[f"demo: newest week {newest.label}, stored, pdf"] = timed(
            demo_url, newest, ".pdf", 7
        )
    return results


def main() -> None:
    # Loading and timing are separate processes: a child's peak memory as the kernel reports
    # it starts from its parent's size when forked, and a parent that loaded a million
    # interactions would lend every timed report its 1 GB.
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "load":
        load_planned_rollback(args[0], Path(args[1]), Path(args[2]))
        print(json.dumps({}))
    elif mode == "demo":
        load_demo(args[0])
        print(json.dumps({}))
    else:
        print(json.dumps(time_reports(args[0], args[1] if len(args) > 1 else None)))


if __name__ == "__main__":
    main()
