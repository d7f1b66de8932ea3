"""Result tables: rows of tests, adjusted together for multiple testing."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol, TypeVar

import numpy as np

from analytics.inference.multiple import benjamini_hochberg


class TestedRow(Protocol):
    @property
    def p_value(self) -> float | None: ...


Row = TypeVar("Row", bound=TestedRow)


def with_q_values(rows: list[Row], alpha: float) -> list[Row]:
    """The rows with Benjamini-Hochberg ``q_value`` across the table and ``significant``
    (q below ``alpha``); rows without a p-value get neither."""
    p_values = np.array([np.nan if r.p_value is None else r.p_value for r in rows], dtype=float)
    q_values = benjamini_hochberg(p_values) if len(rows) else np.array([])
    out = []
    for row, q in zip(rows, q_values, strict=True):
        q_value = None if np.isnan(q) else float(q)
        significant = q_value is not None and q_value < alpha
        out.append(replace(row, q_value=q_value, significant=significant))  # type: ignore[type-var]
    return out
