"""Multiple-testing adjustments: adjusted p-values in input order, NaN passed through."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _valid_p_values(p_values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p_values, dtype=float).ravel()
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("p-values must lie in [0, 1] (or be NaN)")
    return p, finite


def benjamini_hochberg(p_values: ArrayLike) -> np.ndarray:
    r"""Benjamini-Hochberg adjusted p-values (q-values), controlling the false discovery rate.

    With the :math:`m` non-NaN p-values sorted ascending, :math:`p_{(1)} \le \dots \le
    p_{(m)}`,

    .. math::

        q_{(i)} = \min\left(1, \min_{j \ge i} \frac{m}{j} \, p_{(j)}\right)

    and rejecting every hypothesis with :math:`q \le \alpha` controls the FDR at
    :math:`\alpha` for independent (or positively dependent) tests.

    Parameters
    ----------
    p_values : array_like
        Raw p-values in [0, 1]; NaN entries are ignored (not counted in :math:`m`) and come
        back as NaN.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, float64, in input order.

    References
    ----------
    Benjamini, Y. & Hochberg, Y. (1995). Controlling the False Discovery Rate: A Practical and
    Powerful Approach to Multiple Testing. *JRSS B* 57(1), 289-300, section 3.

    Checked against: ``statsmodels.stats.multitest.multipletests(method="fdr_bh")`` and
    GrowthBook ``packages/shared/test/experiments.test.ts`` (tests).
    """
    p, finite = _valid_p_values(p_values)
    adjusted = np.full(p.shape, np.nan)
    values = p[finite]
    m = values.size
    if m == 0:
        return adjusted
    order = np.argsort(values, kind="stable")
    # m / rank first: for the largest p it is exactly 1, so q >= p survives rounding.
    scaled = values[order] * (m / np.arange(1, m + 1))
    q_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    q = np.empty(m)
    q[order] = q_sorted
    adjusted[finite] = q
    return adjusted


def holm_bonferroni(p_values: ArrayLike) -> np.ndarray:
    r"""Holm's step-down adjusted p-values, controlling the family-wise error rate.

    With the :math:`m` non-NaN p-values sorted ascending,

    .. math::

        \tilde p_{(i)} = \min\left(1, \max_{j \le i} (m - j + 1) \, p_{(j)}\right)

    Parameters
    ----------
    p_values : array_like
        Raw p-values in [0, 1]; NaN entries are ignored and come back as NaN.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, float64, in input order.

    References
    ----------
    Holm, S. (1979). A Simple Sequentially Rejective Multiple Test Procedure. *Scandinavian
    Journal of Statistics* 6(2), 65-70.

    Checked against: ``statsmodels.stats.multitest.multipletests(method="holm")`` and
    GrowthBook ``packages/shared/test/experiments.test.ts`` (tests).
    """
    p, finite = _valid_p_values(p_values)
    adjusted = np.full(p.shape, np.nan)
    values = p[finite]
    m = values.size
    if m == 0:
        return adjusted
    order = np.argsort(values, kind="stable")
    scaled = values[order] * (m - np.arange(m))
    adjusted_sorted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    holm = np.empty(m)
    holm[order] = adjusted_sorted
    adjusted[finite] = holm
    return adjusted
