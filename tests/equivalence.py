"""Two computations of one analysis compared: the same users, labels and effects, every number
within a relative 1e-9 (the sums they start from are added in different orders)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from analytics.analysis.pipeline import AnalysisResult

RELATIVE = 1e-9


def assert_close(ours: Any, theirs: Any, path: str = "") -> None:
    """Equal documents: every number within ``RELATIVE``, everything else identical."""
    if isinstance(ours, dict):
        assert set(ours) == set(theirs), path
        for key in ours:
            if key != "analysed_at":
                assert_close(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_close(a, b, f"{path}[{i}]")
    elif isinstance(ours, float) and isinstance(theirs, float):
        assert math.isclose(ours, theirs, rel_tol=RELATIVE, abs_tol=1e-15), (path, ours, theirs)
    else:
        assert ours == theirs, (path, ours, theirs)


def assert_results_match(ours: AnalysisResult, theirs: AnalysisResult) -> None:
    """The same document and the same per-user rows (floats within ``RELATIVE``)."""
    assert_close(ours.document().to_json(), theirs.document().to_json())
    a = ours.users.sort_values("user_id").reset_index(drop=True)
    b = theirs.users.sort_values("user_id").reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    for column in a.columns:
        if a[column].dtype.kind == "f":
            pd.testing.assert_series_equal(a[column], b[column], check_exact=False, rtol=RELATIVE)
        else:
            pd.testing.assert_series_equal(a[column], b[column], check_exact=True)
