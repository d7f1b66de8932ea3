"""``python -m bench.cli URL [RUNS]``: start-up of the ``aftershock`` command.

Runs ``aftershock --help`` and ``aftershock status`` (on the database at URL, its schema
created first by ``aftershock db upgrade``) once each to warm the file cache, then RUNS times
each (default 7), every run a fresh process as a user starts it. Prints one JSON line:
{command: {"runs", "median_s", "min_s", "max_s", "peak_mb"}}, peak_mb the largest resident
set of a run (from ``wait4``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {"aftershock --help": ["--help"], "aftershock status": ["status"]}


def aftershock() -> list[str]:
    """The installed console script (what a user runs), else the same entry point."""
    script = Path(sys.executable).with_name("aftershock")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from rollout.cli.app import main; main()"]


def run_once(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one run, which must succeed."""
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        child = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if child.returncode:
            stderr.seek(0)
            message = stderr.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(args)} exited {child.returncode}:\n{message}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def summarise(runs: list[tuple[float, float]]) -> dict[str, float]:
    """Runs of :func:`run_once` as the JSON line reports them: their count, median, min and
    max seconds, and the largest peak."""
    seconds = [s for s, _ in runs]
    return {
        "runs": len(runs),
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "peak_mb": max(mb for _, mb in runs),
    }


def main() -> None:
    url = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    env = {**os.environ, "AFTERSHOCK_DATABASE_URL": url, "COLUMNS": "120"}
    command = aftershock()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:  # no .env of the checkout is read
        cwd = Path(scratch)
        run_once([*command, "db", "upgrade"], env, cwd)
        for name, args in COMMANDS.items():
            run_once([*command, *args], env, cwd)  # warm-up
            results[name] = summarise([run_once([*command, *args], env, cwd) for _ in range(runs)])
    print(json.dumps(results))


if __name__ == "__main__":
    main()
