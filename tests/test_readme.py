"""Every ``$ aftershock ...`` example in the README runs and succeeds, in order."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analytics.settings import get_settings
from rollout.cli.app import app

README = Path(__file__).parent.parent / "README.md"


def readme_examples() -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", README.read_text(), flags=re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def test_readme_has_examples() -> None:
    assert len(readme_examples()) >= 5


def test_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AFTERSHOCK_DATABASE_URL", "sqlite:///data/aftershock.db")
    get_settings.cache_clear()
    try:
        for example in readme_examples():
            program, *args = shlex.split(example)
            assert program == "aftershock"
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, f"{example}\n{result.output}"
    finally:
        get_settings.cache_clear()
    assert (tmp_path / "data" / "aftershock.db").exists()
