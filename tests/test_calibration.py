"""Null calibration: on A/A data (the "new model" is the old one) the analysis stays quiet.

Marked slow (a few minutes); CI runs it. Each data set is generated, ingested and analysed
end to end, as a user would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from analytics.analysis.pipeline import AnalysisParams, run_analysis
from analytics.db import get_engine
from analytics.demo import DemoConfig, generate_demo, write_demo
from analytics.ingest import ingest_file
from analytics.models import IngestKind

DATA_SETS = 200
ALPHA = 0.05


def aa_config(seed: int) -> DemoConfig:
    """The demo story with every treatment effect switched off and nobody adapting."""
    return DemoConfig(
        n_users=300,
        seed=seed,
        treatment_length_factor=1.0,
        sycophancy_rate=(0.08, 0.08),
        feedback_lift=0.0,
        adaptive_logit=(-40.0, 0.0),
    )


def analyse_aa(folder: Path, seed: int) -> tuple[tuple[bool, bool], np.ndarray]:
    """Whether any metric was BH-significant in each table (behaviour drift, style shift),
    and the per-user p-values of scored users."""
    paths = write_demo(generate_demo(aa_config(seed)), folder)
    engine = get_engine(f"sqlite:///{folder / 'aa.db'}")
    for kind in (IngestKind.exposures, IngestKind.interactions):
        ingest_file(paths[kind.value], kind, engine=engine, rejects_dir=folder)
    result = run_analysis(engine, AnalysisParams("chat-model-upgrade", alpha=ALPHA))
    fired = tuple(
        any(r.q_value is not None and r.q_value < ALPHA for r in table)
        for table in (result.behavior_drift, result.style_shift)
    )
    p_values = result.users["adaptation_p"].dropna().to_numpy()
    engine.dispose()
    return (fired[0], fired[1]), p_values


@pytest.fixture(scope="module")
def aa_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> list[tuple[tuple[bool, bool], np.ndarray]]:
    root = tmp_path_factory.mktemp("aa")
    runs = []
    for seed in range(DATA_SETS):
        folder = root / f"aa{seed}"
        folder.mkdir()
        runs.append(analyse_aa(folder, 1000 + seed))
    return runs


@pytest.mark.slow
def test_per_user_adaptation_p_values_are_uniform_under_the_null(
    aa_runs: list[tuple[tuple[bool, bool], np.ndarray]],
) -> None:
    # Empirical p-values against control users: uniform (at most as discrete as the number
    # of control users allows) when nobody adapts.
    pooled = np.concatenate([p for _, p in aa_runs])
    assert len(pooled) > 5000
    for level in (0.05, 0.10, 0.25, 0.50):
        share = float((pooled <= level).mean())
        assert abs(share - level) < 0.01 + 3 * np.sqrt(level * (1 - level) / len(pooled)), level


@pytest.mark.slow
@pytest.mark.parametrize(
    ("table", "name"),
    [
        (0, "behaviour drift"),
        (1, "style shift"),
    ],
)
def test_aa_data_sets_raise_alarms_at_most_at_alpha(
    aa_runs: list[tuple[tuple[bool, bool], np.ndarray]], table: int, name: str
) -> None:
    # Each table is one Benjamini-Hochberg family (the data contract's q-values are adjusted
    # within the table). Under the complete null BH's false discovery rate is its family-wise
    # rate, so at most alpha of the data sets may show any significant metric in a table, up
    # to the simulation's 95% interval. (Across the two tables the rate is about 1 - 0.95^2.)
    alarms = sum(fired[table] for fired, _ in aa_runs)
    upper = stats.binom.ppf(0.975, DATA_SETS, ALPHA) / DATA_SETS
    assert alarms / DATA_SETS <= upper, f"{name}: {alarms} of {DATA_SETS} A/A data sets alarmed"
