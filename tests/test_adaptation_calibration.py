"""A/A calibration of the per-user adaptation score, method by method (issue 13).

200 seeded experiments where nobody adapts (tests/test_adaptation.py's simulator: users'
own styles, calendar drift, everybody's own learning curve in their first days, half the
users new, without a pre-period), scored with :func:`score_adaptation`. Under the null each
method must alarm (label any treated user ``adapted``) on at most alpha of the data sets, and
its per-user p-values must be uniform. Marked slow (about 20 s).

The empirical p-values are discrete, :math:`(1 + k) / (1 + N)` with :math:`N` control users;
a Kolmogorov-Smirnov test of many of them would reject the steps, not the calibration. So each
is spread uniformly over its step, :math:`p - U / (1 + N)` with :math:`U \\sim U(0, 1)`: exactly
uniform when a treated user's score is exchangeable with the control users' (randomised
p-values; Habiger & Pena 2011, *J. Nonparametric Statistics* 23(2), 355-373).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analytics.documents import ADAPTATION_METHODS
from tests.test_adaptation import simulate

DATA_SETS = 200
ALPHA = 0.05


@pytest.fixture(scope="module")
def aa_runs() -> list[pd.DataFrame]:
    """The scored users of every A/A data set."""
    return [
        simulate(10_000 + seed, n_control=400, n_treated=400, new_share=0.5).score()
        for seed in range(DATA_SETS)
    ]


def randomised_p(scored: pd.DataFrame, method: str, rng: np.random.Generator) -> np.ndarray:
    """The treated users' p-values of ``method``, each spread over its step."""
    null = ((scored["variation"] == "0") & (scored["adaptation_method"] == method)).sum()
    rows = scored[(scored["variation"] == "1") & (scored["adaptation_method"] == method)]
    p = rows["adaptation_p"].to_numpy()
    return np.asarray(p - rng.random(len(p)) / (1 + null))


@pytest.mark.slow
@pytest.mark.parametrize("method", ADAPTATION_METHODS)
def test_under_the_null_a_method_alarms_on_at_most_alpha_of_the_data_sets(
    aa_runs: list[pd.DataFrame], method: str
) -> None:
    alarms = 0
    for scored in aa_runs:
        treated = scored[(scored["variation"] == "1") & (scored["adaptation_method"] == method)]
        assert len(treated) > 100  # every data set has this method's users to judge
        alarms += bool((treated["adaptation_label"] == "adapted").any())
    upper = stats.binom.ppf(0.975, DATA_SETS, ALPHA) / DATA_SETS
    assert alarms / DATA_SETS <= upper, f"{method}: {alarms} of {DATA_SETS} data sets alarmed"


@pytest.mark.slow
@pytest.mark.parametrize("method", ADAPTATION_METHODS)
def test_under_the_null_a_methods_p_values_are_uniform(
    aa_runs: list[pd.DataFrame], method: str
) -> None:
    rng = np.random.default_rng(13)
    pooled = np.concatenate([randomised_p(scored, method, rng) for scored in aa_runs])
    assert len(pooled) > 20_000
    assert stats.kstest(pooled, "uniform").pvalue > 0.01
    for level in (0.01, 0.05, 0.10, 0.50):
        share = float((pooled <= level).mean())
        assert abs(share - level) < 3 * np.sqrt(level * (1 - level) / len(pooled)), level
