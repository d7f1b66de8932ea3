"""Null calibration: on A/A data (the "new model" is the old one) the analysis stays quiet.

Marked slow (a few minutes of CPU); CI runs it. Each data set is generated, ingested and
analysed end to end, as a user would. The data sets are analysed in chunks, one test per
chunk, so that xdist shares them out among its workers; the results go to the session cache
(``tests/session_cache.py``), where the calibration tests read all of them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from analytics.analysis.params import AnalysisParams
from analytics.analysis.pipeline import run_analysis
from analytics.db import get_engine
from analytics.demo import DemoConfig, generate_demo, write_demo
from analytics.inference.multiple import benjamini_hochberg
from analytics.ingest.runner import ingest_file
from analytics.models import IngestKind
from tests.session_cache import SessionCache

DATA_SETS = 200
CHUNKS = 20  # of DATA_SETS // CHUNKS data sets each
ALPHA = 0.05
TABLES = ("behaviour drift", "style shift", "style shift DiD")


@dataclass(frozen=True)
class Run:
    """One analysed A/A data set: whether each of TABLES alarmed (any BH q below alpha),
    the per-user adaptation p-values of scored users, and the style table's p-values of its
    between-arms effect and of its DiD (None where a test could not run)."""

    fired: tuple[bool, bool, bool]
    p_values: np.ndarray
    style_p_values: tuple[float | None, ...]
    did_p_values: tuple[float | None, ...]


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


def analyse_aa(folder: Path, seed: int) -> Run:
    """The A/A data set of ``seed``, generated, ingested and analysed."""
    paths = write_demo(generate_demo(aa_config(seed)), folder)
    engine = get_engine(f"sqlite:///{folder / 'aa.db'}")
    for kind in (IngestKind.exposures, IngestKind.interactions):
        ingest_file(paths[kind.value], kind, engine=engine, rejects_dir=folder)
    result = run_analysis(engine, AnalysisParams("chat-model-upgrade", alpha=ALPHA))
    drift, style = result.behavior_drift, result.style_shift
    did_p_values = tuple(r.did_p_value for r in style)
    # The DiD has no q-values of its own in the table: BH across it, as for the effect.
    did_q = benjamini_hochberg([np.nan if p is None else p for p in did_p_values])
    fired = (
        any(r.q_value is not None and r.q_value < ALPHA for r in drift),
        any(r.q_value is not None and r.q_value < ALPHA for r in style),
        bool((did_q < ALPHA).any()),
    )
    p_values = result.users["adaptation_p"].dropna().to_numpy()
    engine.dispose()
    return Run(fired, p_values, tuple(r.p_value for r in style), did_p_values)


def analysed_chunk(cache: SessionCache, chunk: int) -> list[Run]:
    """The A/A data sets of ``chunk`` (seeds 1000 + chunk * size, ...), analysed once per
    session by whichever xdist worker asks first."""
    size = DATA_SETS // CHUNKS
    seeds = range(1000 + chunk * size, 1000 + (chunk + 1) * size)

    def build(folder: Path) -> None:
        runs = []
        for seed in seeds:
            scratch = folder / f"aa{seed}"
            scratch.mkdir()
            run = analyse_aa(scratch, seed)
            runs.append(
                {
                    "seed": seed,
                    "fired": run.fired,
                    "p_values": run.p_values.tolist(),
                    "style_p_values": run.style_p_values,
                    "did_p_values": run.did_p_values,
                }
            )
            shutil.rmtree(scratch)
        (folder / "runs.json").write_text(json.dumps(runs))

    stored = json.loads((cache.once(f"aa/chunk-{chunk:02d}", build) / "runs.json").read_text())
    assert [r["seed"] for r in stored] == list(seeds)
    return [
        Run(
            (r["fired"][0], r["fired"][1], r["fired"][2]),
            np.array(r["p_values"], dtype=float),
            tuple(r["style_p_values"]),
            tuple(r["did_p_values"]),
        )
        for r in stored
    ]


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_aa_data_sets_are_analysed_end_to_end(session_cache: SessionCache, chunk: int) -> None:
    # Every data set is analysed and scores users with p-values (the tests below judge them).
    for run in analysed_chunk(session_cache, chunk):
        assert len(run.p_values) > 0
        assert ((run.p_values >= 0) & (run.p_values <= 1)).all()
        # Every style metric is compared between arms, new users included.
        assert all(p is not None for p in run.style_p_values)


@pytest.fixture(scope="module")
def aa_runs(session_cache: SessionCache) -> list[Run]:
    """All DATA_SETS A/A data sets, analysed (by the chunk tests above, or here)."""
    return [run for chunk in range(CHUNKS) for run in analysed_chunk(session_cache, chunk)]


@pytest.mark.slow
def test_per_user_adaptation_p_values_are_uniform_under_the_null(
    aa_runs: list[Run],
) -> None:
    # Empirical p-values against control users: uniform (at most as discrete as the number
    # of control users allows) when nobody adapts.
    pooled = np.concatenate([run.p_values for run in aa_runs])
    assert len(pooled) > 5000
    assert_uniform(pooled)


def assert_uniform(pooled: np.ndarray) -> None:
    """The share of p-values at or below each level is the level, up to three binomial
    standard errors and 0.01 for discreteness."""
    for level in (0.05, 0.10, 0.25, 0.50):
        share = float((pooled <= level).mean())
        assert abs(share - level) < 0.01 + 3 * np.sqrt(level * (1 - level) / len(pooled)), level


@pytest.mark.slow
@pytest.mark.parametrize("estimate", ["style_p_values", "did_p_values"])
def test_style_shift_p_values_are_uniform_under_the_null(aa_runs: list[Run], estimate: str) -> None:
    # The between-arms effect and the DiD of every style metric: 7 per data set. Metrics of
    # one data set share users, so this is a check of the marginal distribution, not a test
    # of independent draws (the alarm rates below judge the tables as a whole).
    pooled = np.array([p for run in aa_runs for p in getattr(run, estimate) if p is not None])
    assert len(pooled) >= 0.95 * 7 * DATA_SETS
    assert_uniform(pooled)
    assert stats.kstest(pooled, "uniform").pvalue > 0.001


@pytest.mark.slow
@pytest.mark.parametrize(("table", "name"), list(enumerate(TABLES)))
def test_aa_data_sets_raise_alarms_at_most_at_alpha(
    aa_runs: list[Run], table: int, name: str
) -> None:
    # Each table is one Benjamini-Hochberg family (the data contract's q-values are adjusted
    # within the table). Under the complete null BH's false discovery rate is its family-wise
    # rate, so at most alpha of the data sets may show any significant metric in a table, up
    # to the simulation's 95% interval. (Across the two tables the rate is about 1 - 0.95^2.)
    # The style table is judged twice: on its between-arms effect (its q-values) and on the
    # DiD beside it (BH across the DiD's p-values).
    alarms = sum(run.fired[table] for run in aa_runs)
    upper = stats.binom.ppf(0.975, DATA_SETS, ALPHA) / DATA_SETS
    assert alarms / DATA_SETS <= upper, f"{name}: {alarms} of {DATA_SETS} A/A data sets alarmed"
