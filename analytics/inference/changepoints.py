"""Where did a daily series shift its mean? Optimal segmentation with a Schwarz criterion."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike


def _segment_costs(values: np.ndarray) -> np.ndarray:
    """cost[i, j] = residual sum of squares of values[i:j] about its mean (inf if j <= i)."""
    n = values.size
    s1 = np.concatenate([[0.0], np.cumsum(values)])
    s2 = np.concatenate([[0.0], np.cumsum(values * values)])
    start = np.arange(n + 1)[:, None]
    end = np.arange(n + 1)[None, :]
    length = end - start
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = (s2[None, :] - s2[:, None]) - (s1[None, :] - s1[:, None]) ** 2 / length
    cost = np.where(length > 0, np.maximum(cost, 0.0), np.inf)
    return np.asarray(cost, dtype=float)


def _best_segmentations(
    cost: np.ndarray, max_changes: int, min_size: int
) -> list[tuple[float, list[int]]]:
    """For k = 0..max_changes: the least total RSS with k change points, and where they are.

    Dynamic programming over segment ends (Auger & Lawrence 1989): ``best[k][j]`` is the
    least cost of splitting values[:j] into k + 1 segments of at least ``min_size`` points.
    """
    n = cost.shape[0] - 1
    allowed = np.where(
        (np.arange(n + 1)[None, :] - np.arange(n + 1)[:, None]) >= min_size, cost, np.inf
    )
    best = [allowed[0].copy()]
    back: list[np.ndarray] = [np.zeros(n + 1, dtype=int)]
    for _ in range(max_changes):
        total = best[-1][:, None] + allowed
        back.append(np.argmin(total, axis=0))
        best.append(total[back[-1], np.arange(n + 1)])
    results = []
    for k in range(max_changes + 1):
        if not math.isfinite(best[k][n]):
            break
        starts, end = [], n
        for level in range(k, 0, -1):
            end = int(back[level][end])
            starts.append(end)
        results.append((float(best[k][n]), sorted(starts)))
    return results


def detect_change_points(
    series: ArrayLike,
    *,
    max_change_points: int = 3,
    min_segment_length: int = 3,
    penalty: float | None = None,
) -> list[int]:
    r"""Indices where the mean of a series shifts, by penalised least-squares segmentation.

    Model: the series is piecewise constant in mean with Gaussian noise of one unknown
    variance. For each :math:`k \le` ``max_change_points`` the segmentation minimising the
    residual sum of squares :math:`\mathrm{RSS}_k` is found exactly by dynamic programming
    (Auger & Lawrence 1989); :math:`k` is then chosen by the Schwarz criterion for mean
    shifts with unknown variance (Yao 1988),

    .. math::

        \hat k = \arg\min_k \; n \ln \frac{\mathrm{RSS}_k}{n} + k \, \lambda,
        \qquad \lambda = 3 \ln n \text{ by default}

    Yao's criterion uses :math:`\lambda = 2 \ln n`, which in simulation raises a false
    alarm on about 10% of 60-day null series (mostly near the ends). The default
    :math:`3 \ln n` is the per-change-point penalty of the modified BIC (Zhang & Siegmund
    2007) as the ``changepoint`` R package sets it for a change in mean (``MBIC``:
    (parameters + 2) ln n), without its segment-length term; it keeps false alarms near 1%.
    Segments shorter than ``min_segment_length`` are not considered, and the noise is taken
    as independent: strong day-to-day autocorrelation makes any mean-shift detector
    over-eager. The exact search costs :math:`O(K n^2)` time and :math:`O(n^2)` memory,
    meant for daily series (hundreds of points), not for event streams.

    Parameters
    ----------
    series : array_like
        Values in time order (e.g. the daily treated-minus-control difference of a metric).
        Non-finite values (missing days) are skipped; indices still refer to ``series``.
    max_change_points : int
        The most change points to consider.
    min_segment_length : int
        The fewest points in a segment (>= 1).
    penalty : float, optional
        :math:`\lambda`, the cost of one more change point, overriding :math:`3 \ln n`.

    Returns
    -------
    list[int]
        Sorted indices into ``series`` of the first point of each new segment (the day the
        shift began); empty when no shift is found or the series is too short.

    References
    ----------
    Yao, Y.-C. (1988). Estimating the number of change-points via Schwarz' criterion.
    *Statistics & Probability Letters* 6(3), 181-189.
    Auger, I. E. & Lawrence, C. E. (1989). Algorithms for the optimal identification of
    segment neighborhoods. *Bulletin of Mathematical Biology* 51(1), 39-54.
    Zhang, N. R. & Siegmund, D. O. (2007). A modified Bayes information criterion with
    applications to the analysis of comparative genomic hybridization data. *Biometrics*
    63(1), 22-32.
    Killick, R. & Eckley, I. A. (2014). changepoint: An R Package for Changepoint Analysis.
    *Journal of Statistical Software* 58(3), 1-19.

    Checked against: seeded simulations: null series of 60 days raise a change point
    in under 3% of replicates; a 3-sigma step is located within one day in >= 90% of
    replicates, two steps with missing days both found (tests).
    """
    if max_change_points < 0:
        raise ValueError(f"max_change_points must be >= 0, got {max_change_points}")
    if min_segment_length < 1:
        raise ValueError(f"min_segment_length must be >= 1, got {min_segment_length}")
    raw = np.asarray(series, dtype=float).ravel()
    positions = np.flatnonzero(np.isfinite(raw))
    values = raw[positions]
    n = values.size
    if n < 2 * min_segment_length or max_change_points == 0:
        return []
    lam = 3.0 * math.log(n) if penalty is None else float(penalty)

    segmentations = _best_segmentations(
        _segment_costs(values), max_change_points, min_segment_length
    )
    null_rss = segmentations[0][0]
    if null_rss <= 0:
        return []  # a constant series has no shift
    # An exact fit (noise-free steps) would send ln(RSS) to -inf; floor it at rounding level.
    floor = null_rss * 1e-12

    def criterion(rss: float, k: int) -> float:
        return n * math.log(max(rss, floor) / n) + k * lam

    scores = [criterion(rss, k) for k, (rss, _) in enumerate(segmentations)]
    best_k = int(np.argmin(scores))
    return [int(positions[i]) for i in segmentations[best_k][1]]
