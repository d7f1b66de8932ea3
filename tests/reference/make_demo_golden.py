"""Regenerate the golden outputs of the ``make run`` demo in ``tests/reference/demo_golden``.

Run from the repository root after a deliberate change of the analysis or the planner (then
read the diff of the figures before committing them)::

    .venv/bin/python -m tests.reference.make_demo_golden

It runs the commands ``make run`` runs (3,000 users, seed 7; ``aftershock analyze`` and
``aftershock plan`` with the demo's flag values) against a fresh SQLite file in a temporary
folder, through the installed ``aftershock`` command, and keeps ``analysis.json``,
``users.csv`` and ``plan.json`` (the two larger files gzipped). ``tests/test_demo_golden.py``
runs the same commands and compares what they write with these files.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).parent / "demo_golden"
EXPERIMENT = "chat-model-upgrade"
COMMANDS = (
    ("demo", "generate", "--users", "3000", "--seed", "7", "--out", "demo"),
    ("ingest", "exposures", "demo/exposures.csv"),
    ("ingest", "interactions", "demo/interactions.csv"),
    ("analyze", "--experiment", EXPERIMENT, "--out", "analysis"),
    (
        "plan",
        "--experiment",
        EXPERIMENT,
        "--feature",
        "chat-model",
        "--rollback-value",
        "previous-model",
        "--current-value",
        "new-model",
        "--record-only",
        "--out",
        "plan.json",
    ),
)


def aftershock_command() -> str:
    """The installed ``aftershock`` console script beside this interpreter."""
    return str(Path(sys.executable).with_name("aftershock"))


def run_demo(folder: Path) -> dict[str, Path]:
    """Run ``make run``'s commands in ``folder`` with a database of its own; return the paths
    of analysis.json, users.csv and plan.json."""
    env = {**os.environ, "AFTERSHOCK_DATABASE_URL": f"sqlite:///{folder / 'aftershock.db'}"}
    env.pop("AFTERSHOCK_GROWTHBOOK_API_KEY", None)
    for command in COMMANDS:
        subprocess.run(
            [aftershock_command(), *command],
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    return {
        "analysis.json": folder / "analysis" / "analysis.json",
        "users.csv": folder / "analysis" / "users.csv",
        "plan.json": folder / "plan.json",
    }


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        outputs = run_demo(Path(tmp))
        shutil.copyfile(outputs["analysis.json"], GOLDEN / "analysis.json")
        for name in ("users.csv", "plan.json"):
            data = outputs[name].read_bytes()
            (GOLDEN / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
    print(f"wrote {', '.join(sorted(p.name for p in GOLDEN.iterdir()))} in {GOLDEN}")


if __name__ == "__main__":
    main()
