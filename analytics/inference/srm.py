"""Sample-ratio mismatch: does the observed split of users match the configured weights?"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from analytics.inference.results import ErrorCode, SrmResult

SRM_THRESHOLD = 0.001
"""GrowthBook's default: a p-value below this flags the experiment's assignment as broken."""


def srm_test(
    observed_counts: ArrayLike,
    expected_weights: ArrayLike,
    threshold: float = SRM_THRESHOLD,
) -> SrmResult:
    r"""Chi-square goodness-of-fit test of the users per variation against the weights.

    Over the :math:`k` variations with a non-zero weight :math:`w_i`, with
    :math:`N = \sum o_i` users among them,

    .. math::

        E_i = N \frac{w_i}{\sum_j w_j}, \qquad
        \chi^2 = \sum_i \frac{(o_i - E_i)^2}{E_i}, \qquad
        p = P(\chi^2_{k-1} > \chi^2)

    ``ok`` is :math:`p \ge` ``threshold``. As GrowthBook does, variations with zero (or NaN)
    weight are left out, and the test is skipped with :math:`p = 1` (``ok``, ``error`` set)
    when fewer than two variations remain or no user was counted.

    Parameters
    ----------
    observed_counts : array_like
        Users per variation.
    expected_weights : array_like
        Configured traffic weights, any positive scale; same length as the counts.
    threshold : float
        The p-value below which the split is a mismatch.

    Returns
    -------
    SrmResult
        ``p_value``, ``chi2``, ``ok``, ``df`` (k - 1) and an ``error`` code when skipped.

    References
    ----------
    Fabijan, A. et al. (2019). Diagnosing Sample Ratio Mismatch in Online Controlled
    Experiments. *KDD '19*, 2156-2164.
    GrowthBook ``packages/back-end/src/util/stats.ts::checkSrm``.

    Checked against: GrowthBook ``packages/back-end/test/stats.test.ts`` (all four rows) and
    ``scipy.stats.chisquare`` (tests).
    """
    counts = np.asarray(observed_counts, dtype=float).ravel()
    weights = np.asarray(expected_weights, dtype=float).ravel()
    if counts.shape != weights.shape:
        raise ValueError(f"{counts.size} counts but {weights.size} weights")
    keep = np.isfinite(weights) & (weights != 0)
    counts, weights = counts[keep], weights[keep]
    if not np.all(np.isfinite(counts)):
        return SrmResult(1.0, 0.0, True, 0, ErrorCode.NON_FINITE_INPUT)
    if np.any(counts < 0) or np.any(weights < 0):
        raise ValueError("counts and weights must be non-negative")
    if counts.size < 2:
        return SrmResult(1.0, 0.0, True, 0, ErrorCode.TOO_FEW_VARIATIONS)
    total = counts.sum()
    df = int(counts.size - 1)
    if total == 0:
        return SrmResult(1.0, 0.0, True, df, ErrorCode.TOO_FEW_UNITS)
    expected = total * weights / weights.sum()
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    p_value = float(sps.chi2.sf(chi2, df))
    return SrmResult(p_value=p_value, chi2=chi2, ok=p_value >= threshold, df=df)
