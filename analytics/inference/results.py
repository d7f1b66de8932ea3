"""Frozen result objects returned by the inference procedures.

Degenerate data (too few units, zero variance, a zero control mean, a fit that does not
converge) never raises: the procedure returns one of these with ``error`` set to an
:class:`ErrorCode` and its figures set to ``None``, as gbstats returns a neutral result.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from analytics.inference.sufficient import SampleStats

Distribution = Literal["t", "normal"]


class ErrorCode(StrEnum):
    """Why a procedure returned no figures. A ``str``, so it serialises as its value."""

    TOO_FEW_UNITS = "too_few_units"
    ZERO_VARIANCE = "zero_variance"
    ZERO_CONTROL_MEAN = "zero_control_mean"
    ZERO_DENOMINATOR = "zero_denominator"
    NON_FINITE_INPUT = "non_finite_input"
    ALL_VALUES_TIED = "all_values_tied"
    TOO_FEW_VARIATIONS = "too_few_variations"
    NO_CONVERGENCE = "no_convergence"
    NO_GROWTH = "no_growth"
    NOT_IDENTIFIED = "not_identified"


@dataclass(frozen=True, slots=True)
class TestResult:
    """A two-sample comparison: an effect with its standard error, CI and two-sided p-value.

    ``effect`` is treatment minus control (absolute) or treatment / control - 1 (relative),
    as the producing function says. ``df`` is the Welch-Satterthwaite degrees of freedom
    used for the t quantiles, or ``None`` when the normal distribution was used.
    """

    __test__ = False  # a result type, not a pytest test class

    effect: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    se: float | None
    df: float | None
    error: str | None = None
    alpha: float = 0.05
    relative: bool = False
    distribution: Distribution = "t"

    @property
    def ok(self) -> bool:
        """True when the figures were computed."""
        return self.error is None

    @property
    def significant(self) -> bool:
        """True when the two-sided p-value is below ``alpha`` (False on error)."""
        return self.p_value is not None and self.p_value < self.alpha

    @classmethod
    def failed(
        cls,
        error: str,
        *,
        alpha: float = 0.05,
        relative: bool = False,
        distribution: Distribution = "t",
    ) -> TestResult:
        """The neutral result: every figure ``None``, ``error`` set."""
        return cls(
            effect=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            se=None,
            df=None,
            error=error,
            alpha=alpha,
            relative=relative,
            distribution=distribution,
        )


@dataclass(frozen=True, slots=True)
class RatioEstimate:
    """A pooled ratio metric sum(numerator) / sum(denominator) with its delta-method variance.

    ``variance`` is the variance of the ratio estimator itself (already divided by ``n``), so
    ``se == sqrt(variance)``.
    """

    ratio: float | None
    variance: float | None
    se: float | None
    n: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the figures were computed."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class SrmResult:
    """A sample-ratio-mismatch check: chi-square goodness of fit of the observed split.

    ``ok`` is ``p_value >= threshold`` (0.001 by default, as GrowthBook). ``error`` notes why
    the test was skipped (then ``p_value == 1`` and ``ok``), as GrowthBook does.
    """

    p_value: float
    chi2: float
    ok: bool
    df: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DistributionTestResult:
    """Two distribution-free comparisons of the same two samples.

    ``ks_*`` is the two-sample Kolmogorov-Smirnov test (any difference in distribution),
    ``mw_*`` the Mann-Whitney U test with U counted for the treatment sample, and
    ``probability_of_superiority`` is U / (n_control n_treatment) = P(T > C) + P(T = C) / 2.
    """

    ks_statistic: float | None
    ks_p_value: float | None
    mw_statistic: float | None
    mw_p_value: float | None
    probability_of_superiority: float | None
    n_control: int
    n_treatment: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the figures were computed."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class HalfLifeResult:
    """A fitted saturating-growth curve shift(t) = A (1 - exp(-t ln 2 / h)).

    ``half_life_days`` is h with a (1 - alpha) CI; ``amplitude`` is the plateau A with its
    standard error. Every figure is ``None`` when ``error`` is set.
    """

    half_life_days: float | None
    ci_low: float | None
    ci_high: float | None
    amplitude: float | None
    amplitude_se: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the figures were computed."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class CupedAdjustment:
    """CUPED-adjusted sufficient statistics of the post-period metric, one per group.

    ``theta`` is the regression coefficient of the post value on the pre value (with several
    covariates, :func:`~analytics.inference.cuped.cuped_adjust_covariates`, the first one's;
    ``coefficients`` holds them all, 0 for a covariate without spread); ``variance_reduction``
    is the fraction of the variance of the difference in means that the adjustment removed
    (0 when every coefficient is 0). ``control`` and ``treatment`` are ``None`` when ``error``
    is set.
    """

    theta: float | None
    control: SampleStats | None
    treatment: SampleStats | None
    variance_reduction: float | None
    error: str | None = None
    coefficients: tuple[float, ...] = ()  # one per covariate; ``theta`` is the first

    @property
    def ok(self) -> bool:
        """True when the figures were computed."""
        return self.error is None


@dataclass(frozen=True)
class DriftRow:
    """One row of the behaviour drift table (``analysis.json``'s ``behavior_drift``)."""

    metric: str
    variation: str
    control_mean: float | None
    variation_mean: float | None
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_control: int
    n_variation: int
    ks_p_value: float | None
    mw_p_value: float | None
    psi: float | None
    drift_began: str | None
    error: str | None
    q_value: float | None = None  # set across the table by with_q_values
    significant: bool = False


@dataclass(frozen=True)
class StyleShiftRow:
    """One row of the prompt-style shift table (``analysis.json``'s ``style_shift``).

    ``effect`` (with ``ci_low``, ``ci_high``, ``p_value``, ``q_value``, ``significant``)
    compares all randomised users with a post-period value between arms: the variation's
    post-period mean minus control's, CUPED-adjusted by the pre-period mean where a user has
    one (``n_control``, ``n_variation`` users). ``did`` (``did_*``) is the difference in
    differences over users with both periods (``did_n_control``, ``did_n_variation``): did the
    same users change their writing; ``ols_did`` and ``ols_se`` are the same DiD as the
    user-clustered OLS interaction coefficient. ``error`` is the between-arms test's,
    ``did_error`` the DiD's.
    """

    metric: str
    variation: str
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_control: int
    n_variation: int
    did: float | None
    did_ci_low: float | None
    did_ci_high: float | None
    did_p_value: float | None
    ols_did: float | None
    ols_se: float | None
    did_n_control: int
    did_n_variation: int
    error: str | None
    did_error: str | None
    q_value: float | None = None  # set across the table by with_q_values, on p_value
    significant: bool = False


@dataclass(frozen=True)
class BucketShift:
    """The style shift of one metric in one bucket of days since first exposure.

    ``effect`` compares the bucket's per-user means between arms (every user with a value in
    the bucket, CUPED-adjusted by the pre-period mean where a user has one); ``did`` is the
    difference in differences of the bucket mean minus the pre-period mean, over users with
    both. ``n_*`` count the users of each.
    """

    metric: str
    variation: str
    bucket: str
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_control: int
    n_variation: int
    did: float | None
    did_ci_low: float | None
    did_ci_high: float | None
    did_p_value: float | None
    did_n_control: int
    did_n_variation: int
    error: str | None = None
    did_error: str | None = None
