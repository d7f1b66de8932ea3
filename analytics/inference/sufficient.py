"""Sufficient statistics as value objects, after gbstats' ``SampleMeanStatistic``.

A warehouse can compute ``n``, ``sum`` and ``sum_squares`` (and the cross products for
pairs) in SQL; every test in this package runs on these sums alone, so it scales to any
number of users and merges partial aggregates with ``+``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


def _as_vector(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=float).ravel()


# Below this fraction of sum(y^2) a corrected sum of squares is rounding noise, not spread:
# sum(y^2) - sum(y)^2 / n loses about log2(sum(y^2) / spread) bits to cancellation.
_RELATIVE_ROUNDING = 1e-12


def _centered(sum_ab: float, sum_a: float, sum_b: float, n: float) -> float:
    """Corrected sum of cross products sum((a - mean_a)(b - mean_b)) from raw sums."""
    return sum_ab - sum_a * sum_b / n


def _corrected_squares(sum_squares: float, total: float, n: float) -> float:
    """sum((y - mean)^2) from raw sums, zero when it is within rounding of zero."""
    centered = _centered(sum_squares, total, total, n)
    return centered if centered > _RELATIVE_ROUNDING * abs(sum_squares) else 0.0


@dataclass(frozen=True, slots=True)
class SampleStats:
    r"""One sample summarised by ``n``, ``sum`` and ``sum_squares``.

    Notes
    -----
    .. math::

        \bar y = \frac{\sum y}{n}, \qquad
        s^2 = \frac{\sum y^2 - (\sum y)^2 / n}{n - 1}

    The variance is set to zero when the corrected sum of squares is within rounding
    (1e-12 of :math:`\sum y^2`) of zero, so constant data reads as zero variance.
    Undefined moments (``mean`` for ``n == 0``, ``variance`` for ``n < 2``) are NaN; the
    tests check ``n`` first and return an error code instead.

    Checked against: ``numpy.mean`` and ``numpy.var(ddof=1)`` of the raw values (tests).
    """

    n: float
    sum: float
    sum_squares: float

    @classmethod
    def from_values(cls, values: ArrayLike) -> SampleStats:
        """Summarise raw values (NaN is kept, so it surfaces as a non-finite error)."""
        v = _as_vector(values)
        # inf - inf gives NaN; the tests report non-finite sums as an error code.
        with np.errstate(invalid="ignore", over="ignore"):
            return cls(n=float(v.size), sum=float(v.sum()), sum_squares=float(np.dot(v, v)))

    @classmethod
    def from_moments(cls, n: float, mean: float, variance: float) -> SampleStats:
        """Rebuild the sums from a mean and an unbiased variance (``n >= 1``)."""
        return cls(
            n=float(n),
            sum=float(n * mean),
            sum_squares=float((n - 1) * variance + n * mean * mean),
        )

    @property
    def mean(self) -> float:
        """Sample mean, NaN when empty."""
        return self.sum / self.n if self.n > 0 else math.nan

    @property
    def variance(self) -> float:
        """Unbiased sample variance, NaN when ``n < 2``."""
        if self.n < 2:
            return math.nan
        return _corrected_squares(self.sum_squares, self.sum, self.n) / (self.n - 1)

    @property
    def std(self) -> float:
        """Sample standard deviation (square root of the unbiased variance)."""
        return math.sqrt(self.variance)

    @property
    def is_finite(self) -> bool:
        """True when every sum is finite."""
        return all(math.isfinite(v) for v in (self.n, self.sum, self.sum_squares))

    def __add__(self, other: SampleStats) -> SampleStats:
        """Merge two disjoint samples: the sums add."""
        return SampleStats(
            n=self.n + other.n,
            sum=self.sum + other.sum,
            sum_squares=self.sum_squares + other.sum_squares,
        )


@dataclass(frozen=True, slots=True)
class PairStats:
    r"""Paired values (x, y) per unit summarised by their sums and cross products.

    Two uses, with two readings of x and y:

    * CUPED: x is the pre-period value, y the post-period value of the same user.
    * Ratio metrics: x is the per-user numerator (e.g. refusals), y the per-user
      denominator (e.g. interactions).

    Notes
    -----
    .. math::

        \widehat{\mathrm{cov}}(x, y) = \frac{\sum xy - \sum x \sum y / n}{n - 1}

    Checked against: ``numpy.cov`` of the raw pairs (tests).
    """

    n: float
    sum_x: float
    sum_y: float
    sum_xx: float
    sum_yy: float
    sum_xy: float

    @classmethod
    def from_values(cls, x: ArrayLike, y: ArrayLike) -> PairStats:
        """Summarise raw pairs; ``x`` and ``y`` must have the same length."""
        xv, yv = _as_vector(x), _as_vector(y)
        if xv.shape != yv.shape:
            raise ValueError(f"x and y differ in length: {xv.size} != {yv.size}")
        with np.errstate(invalid="ignore", over="ignore"):
            return cls(
                n=float(xv.size),
                sum_x=float(xv.sum()),
                sum_y=float(yv.sum()),
                sum_xx=float(np.dot(xv, xv)),
                sum_yy=float(np.dot(yv, yv)),
                sum_xy=float(np.dot(xv, yv)),
            )

    @property
    def x(self) -> SampleStats:
        """The x margin."""
        return SampleStats(n=self.n, sum=self.sum_x, sum_squares=self.sum_xx)

    @property
    def y(self) -> SampleStats:
        """The y margin."""
        return SampleStats(n=self.n, sum=self.sum_y, sum_squares=self.sum_yy)

    @property
    def mean_x(self) -> float:
        """Mean of x, NaN when empty."""
        return self.x.mean

    @property
    def mean_y(self) -> float:
        """Mean of y, NaN when empty."""
        return self.y.mean

    @property
    def var_x(self) -> float:
        """Unbiased variance of x, NaN when ``n < 2``."""
        return self.x.variance

    @property
    def var_y(self) -> float:
        """Unbiased variance of y, NaN when ``n < 2``."""
        return self.y.variance

    @property
    def covariance(self) -> float:
        """Unbiased covariance of x and y, NaN when ``n < 2``."""
        if self.n < 2:
            return math.nan
        return _centered(self.sum_xy, self.sum_x, self.sum_y, self.n) / (self.n - 1)

    @property
    def correlation(self) -> float:
        """Pearson correlation of x and y, NaN when either variance is zero or undefined."""
        denominator = math.sqrt(self.var_x * self.var_y)
        return self.covariance / denominator if denominator > 0 else math.nan

    @property
    def is_finite(self) -> bool:
        """True when every sum is finite."""
        return all(
            math.isfinite(v)
            for v in (self.n, self.sum_x, self.sum_y, self.sum_xx, self.sum_yy, self.sum_xy)
        )

    def __add__(self, other: PairStats) -> PairStats:
        """Merge two disjoint samples: the sums add."""
        return PairStats(
            n=self.n + other.n,
            sum_x=self.sum_x + other.sum_x,
            sum_y=self.sum_y + other.sum_y,
            sum_xx=self.sum_xx + other.sum_xx,
            sum_yy=self.sum_yy + other.sum_yy,
            sum_xy=self.sum_xy + other.sum_xy,
        )
