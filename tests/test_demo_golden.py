"""The demo's outputs are what they were: analysis.json, users.csv and plan.json of the
``make run`` commands equal the golden copies in tests/reference/demo_golden (apart from the
moments they were made), so a refactoring that changes a figure is caught.

After a deliberate change of the analysis or the planner, regenerate the copies with
``.venv/bin/python -m tests.reference.make_demo_golden`` and read their diff.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.reference.make_demo_golden import GOLDEN, run_demo
from tests.session_cache import SessionCache

pytestmark = pytest.mark.slow

# Moments of the run and the digest of the code that ran, not results of it.
VOLATILE = {"analysed_at", "created_at", "code_version"}


def _without_moments(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_moments(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_without_moments(v) for v in value]
    return value


def _assert_same(actual: Any, expected: Any, where: str = "$") -> None:
    """Equal JSON, floats to 1e-7 relative: the last bits of a float differ by platform and
    library build, and fitted figures (the adaptation half-life) by the fit's own tolerance
    (seen: 2e-8 between two installs of the same pinned versions)."""
    if isinstance(expected, float) and isinstance(actual, int | float):
        assert math.isclose(actual, expected, rel_tol=1e-7, abs_tol=1e-12), where
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            _assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_same(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, where


@pytest.fixture(scope="module")
def outputs(session_cache: SessionCache) -> dict[str, Path]:
    """What the commands wrote: run once per session, by whichever xdist worker asks first."""

    def build(folder: Path) -> None:
        written = {name: str(path.relative_to(folder)) for name, path in run_demo(folder).items()}
        (folder / "outputs.json").write_text(json.dumps(written))

    folder = session_cache.once("demo_golden", build)
    written = json.loads((folder / "outputs.json").read_text())
    return {name: folder / path for name, path in written.items()}


def test_analysis_json_is_unchanged(outputs: dict[str, Path]) -> None:
    actual = json.loads(outputs["analysis.json"].read_text())
    expected = json.loads((GOLDEN / "analysis.json").read_text())
    _assert_same(_without_moments(actual), _without_moments(expected))


def test_users_csv_is_unchanged(outputs: dict[str, Path]) -> None:
    actual = pd.read_csv(outputs["users.csv"])
    expected = pd.read_csv(io.BytesIO(gzip.decompress((GOLDEN / "users.csv.gz").read_bytes())))
    pd.testing.assert_frame_equal(actual, expected, rtol=1e-7, atol=1e-12)


def test_plan_json_is_unchanged(outputs: dict[str, Path]) -> None:
    actual = json.loads(outputs["plan.json"].read_text())
    expected = json.loads(gzip.decompress((GOLDEN / "plan.json.gz").read_bytes()))
    _assert_same(_without_moments(actual), _without_moments(expected))
