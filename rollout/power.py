"""What a stage's guardrail can see: the smallest regression it detects, how long it must hold,
and the smallest partial step that can be guarded at all.

A partial stage splits its cohort at random into users moved and users not yet moved; after
``t`` days a share ``A(t)`` of them has been active (each user is active on a day with their own
probability ``a``, from the recent window, so ``A(t) = mean(1 - (1 - a)^t)``). The stage's
guardrail (rollout.guardrails) compares the arms' per-user means with an always-valid
confidence sequence at ``alpha / len(guardrails)``: it pauses once the estimate exceeds the
sequence's half-width, ``m(n)`` standard errors with ``n`` the active users of both arms
(analytics.inference.sequential). So with ``n1`` and ``n2`` active users in the arms and a
metric whose per-user means have standard deviation ``sd``, a regression ``delta`` is caught at
the end of the hold with probability

.. math::

    \\pi = \\Phi\\Bigl(\\frac{\\delta / sd}{\\sqrt{1/n_1 + 1/n_2}} - m(n_1 + n_2)\\Bigr)

(looks before the end only add chances), and the smallest regression caught with the policy's
power ``beta`` is ``(m(n) + z_beta) sd sqrt(1/n1 + 1/n2)``. With ``N`` users in the cohort and
``c`` of them moved, ``1/n1 + 1/n2 = 1 / (N A c (1 - c))``: the test sees the tolerated
regression ``delta`` exactly when ``c (1 - c) >= q = ((m + z_beta) sd / delta)^2 / (N A)``, so
the smallest guardable step is ``c = (1 - sqrt(1 - 4 q)) / 2``, and none is when ``q > 1/4``:
the cohort is too small for its guardrails, whatever the step.

A disruption among the moved users shows in their guardrail metrics: with a share ``s`` of
them disrupted and each disrupted user's metrics worse by :data:`DISRUPTION_EFFECT_SD`
standard deviations, the arms differ by ``s`` times that, caught with the probability above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from analytics.inference.sequential import sequential_rho
from rollout.guardrails import GUARDRAIL_TUNING, Guardrail, GuardrailParams

DISRUPTION_EFFECT_SD = 1.0
"""How far a disrupted user's guardrail metrics move, in standard deviations of the users'
per-user means: a second disruption is a shock as large as the usual difference between two
users (the rollout simulation in the tests plants about 1.5)."""
ACTIVITY_BINS = 20  # quantiles of daily activity that stand for a cohort's users
MIN_USERS_PER_ARM = GuardrailParams().min_users_per_arm  # what a stage's guardrail waits for


def boundary(n: np.ndarray | float, alpha: float, tuning: float = GUARDRAIL_TUNING) -> np.ndarray:
    """The confidence sequence's half-width in standard errors at ``n`` units of both arms
    (:func:`analytics.inference.sequential.sequential_halfwidth` divided by the standard
    error, vectorised)."""
    rho2 = sequential_rho(alpha, tuning) ** 2
    n = np.maximum(np.asarray(n, dtype=float), 1.0)
    return np.sqrt(2.0 * (n * rho2 + 1.0) / (n * rho2) * np.log(np.sqrt(n * rho2 + 1.0) / alpha))


@dataclass(frozen=True)
class CohortPower:
    """What the power of a cohort's stages depends on: its users, their daily activity and
    the spread of each guardrail metric's per-user means."""

    users: int
    activity: np.ndarray  # ACTIVITY_BINS quantiles of the users' daily activity
    metric_sd: Mapping[str, float]

    @classmethod
    def of(
        cls,
        daily_active: np.ndarray,
        metrics: Mapping[str, np.ndarray],
        fallback_sd: Mapping[str, float],
    ) -> CohortPower:
        """From the users' daily activity and per-user metric means (NaN: no data); a metric
        with fewer than two values takes ``fallback_sd`` (the spread among all users)."""
        active = np.clip(np.asarray(daily_active, dtype=float), 0.0, 1.0)
        probes = (np.arange(ACTIVITY_BINS) + 0.5) / ACTIVITY_BINS
        bins = np.quantile(active, probes) if len(active) else np.zeros(ACTIVITY_BINS)
        sd = {}
        for metric, values in metrics.items():
            present = values[~np.isnan(values)]
            spread = float(np.std(present, ddof=1)) if len(present) >= 2 else math.nan
            sd[metric] = spread if math.isfinite(spread) and spread > 0 else fallback_sd[metric]
        return cls(len(active), bins, sd)

    def active_share(self, days: np.ndarray | float) -> np.ndarray:
        """``A(t)``: the share of the cohort active at least once within ``days``."""
        t = np.atleast_1d(np.asarray(days, dtype=float))
        idle = np.mean((1.0 - self.activity[None, :]) ** t[:, None], axis=1)
        return np.asarray(1.0 - idle, dtype=float)

    def effect_sizes(self, guardrails: Sequence[Guardrail]) -> dict[str, float]:
        """Each guardrail's tolerated regression in standard deviations of its metric."""
        return {
            g.metric: g.max_regression / self.metric_sd[g.metric]
            for g in guardrails
            if math.isfinite(self.metric_sd.get(g.metric, math.nan))
            and self.metric_sd[g.metric] > 0
        }


@dataclass(frozen=True)
class StagePower:
    """A partial stage's test at the end of its hold."""

    hold_hours: int
    moved_active: float  # expected active users in each arm by then
    staying_active: float
    mde: float  # smallest effect (in SDs) caught with the policy's power; inf: no test
    power: float  # of catching the hardest guardrail's tolerated regression
    can_see: bool  # every guardrail's tolerated regression is caught with the power

    def min_detectable(self, sd: float) -> float | None:
        return None if not math.isfinite(self.mde) else self.mde * sd


class PowerModel:
    """Holds and detection for one cohort under one policy's levels."""

    def __init__(
        self,
        cohort: CohortPower,
        guardrails: Sequence[Guardrail],
        *,
        alpha: float,
        power: float,
        min_hold_hours: float,
        max_hold_hours: float,
    ) -> None:
        self.cohort = cohort
        self.guardrails = tuple(guardrails)
        self.alpha = alpha / max(len(self.guardrails), 1)
        self.z_power = float(norm.ppf(power))
        self.power = power
        self.min_hours = max(math.ceil(min_hold_hours - 1e-9), 0)
        self.max_hours = max(math.ceil(max_hold_hours - 1e-9), self.min_hours, 1)
        self.sizes = cohort.effect_sizes(self.guardrails)
        self.hardest = min(self.sizes.values()) if self.sizes else math.nan
        hours = np.arange(0, self.max_hours + 1)
        self._active = cohort.users * cohort.active_share(hours / 24.0)  # by whole hour
        self._boundary = boundary(self._active, self.alpha)

    def smallest_guardable(self) -> float | None:
        """The smallest share of the cohort whose step the guardrails can see within the
        longest hold (rounded up to 0.1%), or None when no step can be guarded."""
        if not math.isfinite(self.hardest):
            return None
        active = self._active[-1]
        q = ((self._boundary[-1] + self.z_power) / self.hardest) ** 2 / max(active, 1e-12)
        if q > 0.25:
            return None
        share = (1.0 - math.sqrt(1.0 - 4.0 * q)) / 2.0
        share = max(share, MIN_USERS_PER_ARM / max(active, 1e-12))
        if share > 0.5:
            return None
        return float(math.ceil(share * 1000.0 - 1e-9) / 1000.0)

    def _mde(self, share: float) -> np.ndarray:
        with np.errstate(divide="ignore"):
            se = 1.0 / np.sqrt(self._active * share * (1.0 - share))
        return (self._boundary + self.z_power) * se

    def stage(
        self, share: float, hold_factor: float = 1.0, target: float | None = None
    ) -> StagePower:
        """The hold of a step to ``share`` of the cohort: the first whole hour from the
        policy's shortest hold at which its test sees every tolerated regression (or, given,
        an effect of ``target`` SDs) with the policy's power, times ``hold_factor``, within
        the longest hold. A step to 100% leaves no one to compare with: it holds for the
        shortest hold and has no test."""
        if share >= 1.0 or not math.isfinite(self.hardest):
            return StagePower(self.min_hours, 0.0, 0.0, math.inf, 0.0, False)
        mde = self._mde(share)
        arms = np.minimum(share, 1.0 - share) * self._active
        seen = np.flatnonzero(
            (mde[self.min_hours :] <= self.hardest) & (arms[self.min_hours :] >= MIN_USERS_PER_ARM)
        )
        needed = self.min_hours + int(seen[0]) if len(seen) else self.max_hours
        hours = min(max(math.ceil(needed * hold_factor - 1e-9), self.min_hours), self.max_hours)
        reached = self.detect(share, self.hardest, hours)
        can_see = bool(mde[hours] <= self.hardest * (1 + 1e-9) and arms[hours] >= MIN_USERS_PER_ARM)
        return StagePower(
            hold_hours=hours,
            moved_active=float(self._active[hours] * share),
            staying_active=float(self._active[hours] * (1.0 - share)),
            mde=float(mde[hours]),
            power=reached,
            can_see=can_see,
        )

    def detect(self, share: float, effect: float, hours: int) -> float:
        """The chance the stage's test catches a regression of ``effect`` SDs among the moved
        users by the end of a hold of ``hours``."""
        if share >= 1.0 or effect <= 0 or not math.isfinite(effect):
            return 0.0
        active = self._active[min(hours, self.max_hours)]
        if active * min(share, 1.0 - share) < 2:
            return 0.0
        se = 1.0 / math.sqrt(active * share * (1.0 - share))
        return float(norm.cdf(effect / se - self._boundary[min(hours, self.max_hours)]))

    def detect_disruption(self, share: float, disrupted: float, hours: int) -> float:
        """The chance a guardrail catches moved users of whom a share ``disrupted`` was
        disrupted (each disrupted user's metrics worse by :data:`DISRUPTION_EFFECT_SD`).
        The guardrails watch the same users, so their catches overlap: counted as one."""
        if not self.sizes:
            return 0.0
        return self.detect(share, disrupted * DISRUPTION_EFFECT_SD, hours)
