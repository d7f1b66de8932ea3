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


def two_stage_benjamini_hochberg(p_values: ArrayLike, alpha: float) -> np.ndarray:
    r"""Adjusted p-values of the two-stage adaptive procedure of Benjamini, Krieger and
    Yekutieli: the false discovery rate at :math:`\alpha`, with more power than
    :func:`benjamini_hochberg` when many hypotheses are false.

    Benjamini-Hochberg controls the FDR at :math:`\pi_0 \alpha`, where :math:`\pi_0` is the
    share of true nulls: conservative by :math:`\pi_0` when many users truly changed. This
    procedure estimates the number of true nulls and spends the rest. With
    :math:`\alpha' = \alpha / (1 + \alpha)`, stage one is Benjamini-Hochberg at
    :math:`\alpha'`, rejecting :math:`r_1` of :math:`m`; with :math:`\hat m_0 = m - r_1`,
    stage two is Benjamini-Hochberg at :math:`\alpha' m / \hat m_0`. The adjusted values
    are the q-values of :func:`benjamini_hochberg` scaled to that level,

    .. math::

        \tilde q_i = \min\left(1, (1 + \alpha) \, \frac{\hat m_0}{m} \, q_i\right)

    (:math:`\hat m_0 = m` when stage one rejects nothing or everything), so that
    :math:`\tilde q_i \le \alpha` are stage two's rejections. They depend on ``alpha``:
    compare them with the ``alpha`` they were computed for, not with another level.

    Parameters
    ----------
    p_values : array_like
        Raw p-values in [0, 1]; NaN entries are ignored and come back as NaN.
    alpha : float
        The false discovery rate to control, in (0, 1).

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, float64, in input order.

    References
    ----------
    Benjamini, Y., Krieger, A. M. & Yekutieli, D. (2006). Adaptive linear step-up procedures
    that control the false discovery rate. *Biometrika* 93(3), 491-507, definition 6.

    Checked against: ``statsmodels.stats.multitest.multipletests(method="fdr_tsbky")``, and a
    seeded simulation of its false discovery rate and power (tests).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), not {alpha!r}")
    q = benjamini_hochberg(p_values)
    finite = ~np.isnan(q)
    m = int(finite.sum())
    if m == 0:
        return q
    first_stage = int((q[finite] <= alpha / (1 + alpha)).sum())
    true_nulls = m if first_stage in (0, m) else m - first_stage
    return np.minimum(q * (1 + alpha) * true_nulls / m, 1.0)


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
