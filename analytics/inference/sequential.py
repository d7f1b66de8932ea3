"""Always-valid confidence sequences for a difference in means, as GrowthBook's gbstats builds
them for its sequential t-test.

A fixed-horizon confidence interval covers the truth with probability 1 - alpha at the one
sample size chosen in advance; looked at every day, it excludes the truth far more often. A
confidence sequence covers it at every sample size at once, so a guardrail may be checked as
often as anyone likes and acted on the moment it excludes zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analytics.inference.results import ErrorCode
from analytics.inference.sufficient import SampleStats
from analytics.inference.ttests import compare_group_means

DEFAULT_TUNING = 5000.0
"""gbstats' default tuning parameter N*: the total sample size at which the CS is tightest."""


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """A two-sample comparison with an always-valid confidence sequence and p-value.

    ``effect`` is treatment minus control (absolute) or treatment / control - 1 (relative).
    ``ci_low``/``ci_high`` are ``effect`` -/+ ``halfwidth``: the confidence sequence at the
    current sample size ``n`` (units in both samples). ``p_value`` is the always-valid
    p-value, below ``alpha`` exactly when the sequence excludes zero. Every figure is ``None``
    when ``error`` is set.
    """

    effect: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    se: float | None
    halfwidth: float | None
    n: float
    error: str | None = None
    alpha: float = 0.05
    tuning: float = DEFAULT_TUNING
    relative: bool = False

    @property
    def ok(self) -> bool:
        """True when the figures were computed."""
        return self.error is None

    @property
    def significant(self) -> bool:
        """True when the sequence excludes zero (False on error)."""
        return self.p_value is not None and self.p_value < self.alpha

    @classmethod
    def failed(
        cls, error: str, *, n: float, alpha: float, tuning: float, relative: bool
    ) -> SequentialResult:
        """The neutral result: every figure ``None``, ``error`` set."""
        return cls(
            effect=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            se=None,
            halfwidth=None,
            n=n,
            error=error,
            alpha=alpha,
            tuning=tuning,
            relative=relative,
        )


def _check_arguments(alpha: float, tuning: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if not (math.isfinite(tuning) and tuning > 0):
        raise ValueError(f"the tuning parameter must be a positive number, got {tuning}")


def sequential_rho(alpha: float, tuning: float) -> float:
    r"""Mixing parameter :math:`\rho` that makes the two-sided CS tightest at ``tuning`` units.

    .. math::

        \rho = \sqrt{\frac{-2 \ln \alpha + \ln(1 - 2 \ln \alpha)}{N^*}}

    Parameters
    ----------
    alpha : float
        Two-sided level of the confidence sequence.
    tuning : float
        :math:`N^*`, the total sample size (both arms) where the sequence should be narrowest.

    Returns
    -------
    float
        :math:`\rho > 0`.

    References
    ----------
    Waudby-Smith, I., Arbour, D., Sinha, R., Kennedy, E. H. & Ramdas, A. (2023).
    Time-uniform central limit theory and asymptotic confidence sequences.
    arXiv:2103.06476v7, eq. (161); after Howard, S. R., Ramdas, A., McAuliffe, J. &
    Sekhon, J. (2021). Time-uniform, nonparametric, nonasymptotic confidence sequences.
    *Annals of Statistics* 49(2), 1055-1080 (the normal mixture tuned to one sample size).

    Checked against: GrowthBook gbstats ``sequential_rho`` through the ``TestSequentialTTest``
    reference interval (tests).
    """
    _check_arguments(alpha, tuning)
    log_alpha = math.log(alpha)
    return math.sqrt((-2.0 * log_alpha + math.log(1.0 - 2.0 * log_alpha)) / tuning)


def sequential_halfwidth(variance: float, n: float, alpha: float, tuning: float) -> float:
    r"""Half-width of the asymptotic normal-mixture confidence sequence around an estimate.

    With :math:`\hat\sigma^2 = n \, \widehat{\mathrm{Var}}(\hat\Delta)` the per-unit variance
    (gbstats' convention for two samples: the estimator's variance times the total units)
    and :math:`\rho` from :func:`sequential_rho`,

    .. math::

        B_n = \hat\sigma \sqrt{\frac{2 (n \rho^2 + 1)}{n^2 \rho^2}
              \ln\left(\frac{\sqrt{n \rho^2 + 1}}{\alpha}\right)}

    Parameters
    ----------
    variance : float
        :math:`\widehat{\mathrm{Var}}(\hat\Delta)`, the variance of the estimate itself.
    n : float
        Units in both samples together.
    alpha, tuning : float
        Level and :math:`N^*`, as in :func:`sequential_rho`.

    Returns
    -------
    float
        :math:`B_n`; the sequence is :math:`\hat\Delta \pm B_n`.

    References
    ----------
    Waudby-Smith et al. (2023), arXiv:2103.06476v7, eq. (9): the asymptotic confidence
    sequence (Robbins' normal mixture with the empirical variance).

    Checked against: GrowthBook gbstats ``TestSequentialTTest`` (tests).
    """
    rho2 = sequential_rho(alpha, tuning) ** 2
    scaled = n * rho2 + 1.0
    per_unit_variance = variance * n
    return math.sqrt(
        per_unit_variance * 2.0 * scaled * math.log(math.sqrt(scaled) / alpha) / (n * n * rho2)
    )


def _always_valid_p_value(effect: float, variance: float, n: float, rho2: float) -> float:
    # The mixture e-value exp(rho^2 n z^2 / (2 (n rho^2 + 1))) / sqrt(n rho^2 + 1), with
    # z = effect / se; worked in logs so that overwhelming evidence cannot overflow exp.
    scaled = n * rho2 + 1.0
    log_e_value = rho2 * n * effect * effect / variance / (2.0 * scaled) - 0.5 * math.log(scaled)
    return 1.0 if log_e_value <= 0 else math.exp(-log_e_value)


def confidence_sequence(
    control: SampleStats,
    treatment: SampleStats,
    alpha: float = 0.05,
    *,
    tuning: float = DEFAULT_TUNING,
    relative: bool = False,
) -> SequentialResult:
    r"""Always-valid (1 - alpha) confidence sequence for treatment minus control means.

    The estimate and its variance are Welch's (absolute) or the delta method's (relative,
    :math:`\bar y_t / \bar y_c - 1`), as in :func:`~analytics.inference.ttests.welch_test`
    and :func:`~analytics.inference.ttests.relative_effect`:

    .. math::

        \widehat{\mathrm{Var}}(\hat\Delta) = \frac{s_t^2}{n_t} + \frac{s_c^2}{n_c}
        \quad\text{or}\quad
        \frac{s_t^2}{n_t \bar y_c^2} + \frac{\bar y_t^2 s_c^2}{n_c \bar y_c^4}

    With :math:`n = n_c + n_t`, :math:`\hat\sigma^2 = n \widehat{\mathrm{Var}}(\hat\Delta)`
    and :math:`\rho` from :func:`sequential_rho`, the sequence is

    .. math::

        \hat\Delta \pm \hat\sigma \sqrt{\frac{2 (n \rho^2 + 1)}{n^2 \rho^2}
              \ln\left(\frac{\sqrt{n \rho^2 + 1}}{\alpha}\right)}

    and the always-valid p-value is :math:`\min(1, 1 / E_n)` with the mixture e-value
    :math:`E_n = (n \rho^2 + 1)^{-1/2} \exp\left(\frac{n \rho^2 z^2}{2 (n \rho^2 + 1)}\right)`,
    :math:`z = \hat\Delta / \sqrt{\widehat{\mathrm{Var}}(\hat\Delta)}`; :math:`p < \alpha`
    exactly when the sequence excludes zero.

    The guarantee is asymptotic and time-uniform: the chance that the sequence *ever*
    excludes the true difference, however often it is looked at, tends to at most alpha.
    The price is width: at alpha 0.05 it is at least 3.03 standard errors wide on each side
    (1.55 times the fixed-horizon normal interval near :math:`n = N^*`), so from about ten
    units per arm it contains the Welch interval; with fewer, the t quantile can exceed it.

    Parameters
    ----------
    control, treatment : SampleStats
        Sufficient statistics of the two independent samples so far.
    alpha : float
        Two-sided level; the sequence covers with probability at least :math:`1 - \alpha`
        simultaneously at every sample size.
    tuning : float
        :math:`N^*`, the total units at which the sequence is narrowest relative to the
        fixed-horizon interval. Fix it before the data arrive; gbstats' default is 5000.
    relative : bool
        Report :math:`\bar y_t / \bar y_c - 1` instead of :math:`\bar y_t - \bar y_c`.

    Returns
    -------
    SequentialResult
        With ``error`` set and no figures for fewer than two units in an arm
        (``too_few_units``), non-finite sums, zero variance in both arms, or (relative) a
        zero control mean.

    References
    ----------
    Waudby-Smith, I., Arbour, D., Sinha, R., Kennedy, E. H. & Ramdas, A. (2023).
    Time-uniform central limit theory and asymptotic confidence sequences.
    arXiv:2103.06476v7, eq. (9) (the sequence), eq. (155) (the p-value), eq. (161) (rho);
    published in the *Annals of Statistics* (2024).
    Howard, S. R., Ramdas, A., McAuliffe, J. & Sekhon, J. (2021). Time-uniform,
    nonparametric, nonasymptotic confidence sequences. *Annals of Statistics* 49(2),
    1055-1080.
    GrowthBook gbstats ``gbstats/frequentist/tests.py::SequentialTwoSidedTTest``.

    Checked against: the gbstats ``TestSequentialTTest`` relative reference (tuning 1000:
    effect 0.50336, CI [-0.55844, 1.56516]) to 4 decimals; containment of
    ``scipy.stats.ttest_ind(equal_var=False)`` intervals; seeded peeking simulations (tests).
    """
    _check_arguments(alpha, tuning)
    n = control.n + treatment.n

    def failed(error: str) -> SequentialResult:
        return SequentialResult.failed(error, n=n, alpha=alpha, tuning=tuning, relative=relative)

    # The estimate, its variance and every degenerate case come from the fixed-horizon
    # test, so both tests always agree on what they estimate and when they cannot.
    fixed = compare_group_means(
        control.mean,
        control.variance / control.n if control.n > 0 else math.nan,
        control.n,
        treatment.mean,
        treatment.variance / treatment.n if treatment.n > 0 else math.nan,
        treatment.n,
        alpha=alpha,
        relative=relative,
        distribution="normal",
    )
    if fixed.error is not None or fixed.effect is None or fixed.se is None:
        return failed(fixed.error or ErrorCode.NON_FINITE_INPUT)
    effect, variance = fixed.effect, fixed.se**2
    halfwidth = sequential_halfwidth(variance, n, alpha, tuning)
    rho2 = sequential_rho(alpha, tuning) ** 2
    return SequentialResult(
        effect=effect,
        ci_low=effect - halfwidth,
        ci_high=effect + halfwidth,
        p_value=_always_valid_p_value(effect, variance, n, rho2),
        se=fixed.se,
        halfwidth=halfwidth,
        n=n,
        error=None,
        alpha=alpha,
        tuning=tuning,
        relative=relative,
    )
