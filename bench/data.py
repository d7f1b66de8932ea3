"""Benchmark inputs, generated at run time from the seeded demo generator and cached on disk."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.csv as pa_csv

from analytics.demo import DemoConfig, generate_demo

CACHE = Path(__file__).parent / "results"
INTERACTIONS_PER_USER = 18.5  # what the demo generator yields on average


def demo_csvs(rows: int, seed: int = 11) -> tuple[Path, Path]:
    """CSVs of exactly ``rows`` demo interactions (prompts ~30 words, responses ~120) and of
    the exposures of their experiment: (interactions, exposures)."""
    interactions = CACHE / f"interactions-{rows}-{seed}.csv"
    exposures = CACHE / f"exposures-{rows}-{seed}.csv"
    if interactions.exists() and exposures.exists():
        return interactions, exposures
    CACHE.mkdir(parents=True, exist_ok=True)
    users = math.ceil(rows / INTERACTIONS_PER_USER * 1.05)
    data = generate_demo(DemoConfig(n_users=users, seed=seed))
    if data.interactions.num_rows < rows:
        raise RuntimeError(f"the demo made {data.interactions.num_rows} rows, fewer than {rows}")
    for path, table in (
        (interactions, data.interactions.slice(0, rows)),
        (exposures, data.exposures),
    ):
        partial = path.with_suffix(".partial")
        pa_csv.write_csv(table, partial)
        partial.rename(path)
    return interactions, exposures
