"""The CLI starts light: importing it and building its command tree loads none of the heavy
libraries (they are imported by the commands that use them), and ``--help`` works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("scipy", "statsmodels", "fastapi", "streamlit", "pandas", "pyarrow")

# What is imported by the CLI module, then by building its whole command tree (which resolves
# every option's type, as ``--help`` does).
PROBE = """
import json, sys
import rollout.cli.app
imported = sorted(sys.modules)
import typer.main
typer.main.get_command(rollout.cli.app.app)
print(json.dumps({"import": imported, "command tree": sorted(sys.modules)}))
"""


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_importing_the_cli_loads_no_heavy_library() -> None:
    done = _run([sys.executable, "-c", PROBE])
    assert done.returncode == 0, done.stderr
    for stage, modules in json.loads(done.stdout).items():
        loaded = {name.partition(".")[0] for name in modules}
        assert loaded.isdisjoint(HEAVY), f"{stage}: {sorted(loaded & set(HEAVY))}"


def _aftershock() -> list[str]:
    script = Path(sys.executable).with_name("aftershock")
    if script.exists():
        return [str(script)]
    found = shutil.which("aftershock")
    return [found] if found else [sys.executable, "-c", "from rollout.cli.app import main; main()"]


@pytest.mark.parametrize(
    ("args", "shows"),
    [(["--help"], "adaptation-aware rollbacks"), (["status", "--help"], "What the database holds")],
)
def test_help_exits_0(args: list[str], shows: str) -> None:
    done = _run([*_aftershock(), *args], env={"COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    assert shows in done.stdout


def test_restated_choices_agree_with_their_sources() -> None:
    """The CLI restates the token scopes its help text needs (so as not to import the token
    store) and reads the strategies from rollout.policy, as the planner does."""
    from rollout.cli import api, plans
    from rollout.planner import STRATEGIES
    from rollout.tokens import SCOPES

    assert api.SCOPES == SCOPES
    assert plans.STRATEGIES == STRATEGIES
