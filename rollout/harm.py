"""The two harms of a rollback, in expectation, for users moved at given times.

A rollback hurts in two ways, and a plan trades one for the other:

- **Second disruptions.** A user moved back to the old value is disrupted with probability
  their second-disruption risk at the time they are moved (rollout.risk):
  ``r_i(t) = a_i (1 - 2^{-(d_i + t)/h}) f_i``, with ``a_i`` the evidence that they adapted,
  ``d_i`` their days exposed when the plan starts, ``h`` the adaptation half-life and ``f_i``
  their activity factor. A move through the bridge value is two moves, each disrupting with
  half the risk at the first (the bridge ends adaptation to the current value).
- **Continued exposure.** Every active day a user spends on the current, misbehaving value
  until they are moved: ``u_i t`` expected active user-days for a user active on a share
  ``u_i`` of days and moved at day ``t``.
- **New adapters**, which feed the first: users not yet moved keep adapting, so their
  risk grows with the wait. ``a_i (2^{-d_i/h} - 2^{-(d_i + t)/h})`` is the expected share of a
  full adaptation user ``i`` gains by day ``t``; summed, the users expected to adapt while
  they wait.

A stage's guardrail catches a disruption among the users it moved with probability ``pi_s``
(rollout.power, assuming a disrupted user's guardrail metrics regress by the tolerated
amount). A catch pauses the plan: the users of later stages are spared a second disruption
but stay on the current value until the deadline ``H``, when the team's fallback (a fixed
model, the bridge, or keeping them) takes over. With ``rho_s = prod_{s' < s} (1 - pi_{s'})``
the chance stage ``s`` is reached and user ``i`` moved by stage ``s_i`` at day ``t_i``:

.. math::

    D = \\sum_i \\rho_{s_i} r_i(t_i), \\qquad
    X = \\sum_i u_i \\bigl(\\rho_{s_i} t_i + (1 - \\rho_{s_i}) H\\bigr), \\qquad
    C = D + X / k

where ``k``, the policy's ``exposure_day_cost``, is how many exposed active user-days weigh as
much as one second disruption. Assumptions: users act independently; activity is steady at
its recent rate; adaptation follows the population's saturating curve; false pauses are
ignored (the guardrails' always-valid level keeps them rare); moving a user who did not adapt
disrupts no one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Harms:
    """Expected harms of a rollback (or of one stage of it)."""

    second_disruptions: float = 0.0
    exposed_user_days: float = 0.0
    new_adapters: float = 0.0

    def __add__(self, other: Harms) -> Harms:
        return Harms(
            self.second_disruptions + other.second_disruptions,
            self.exposed_user_days + other.exposed_user_days,
            self.new_adapters + other.new_adapters,
        )

    def combined(self, exposure_day_cost: float) -> float:
        """Both harms in second disruptions."""
        return self.second_disruptions + self.exposed_user_days / exposure_day_cost


class Adaptation:
    """Per user, what their risk at a later day depends on (arrays of one length), with the
    sums the harms need over any set of users (an index array)."""

    def __init__(
        self,
        *,
        evidence: np.ndarray,  # a_i: probability they adapt (rollout.risk.adaptation_evidence)
        days_exposed: np.ndarray,  # d_i at the plan's start
        activity_factor: np.ndarray,  # f_i (rollout.risk.second_disruption_risk)
        daily_active: np.ndarray,  # u_i: share of days they are active
        half_life_days: float,
        scale: np.ndarray,  # per user, observed disruption over planned (1 until a replan)
    ) -> None:
        self.half_life_days = half_life_days
        self.evidence = np.asarray(evidence, dtype=float)
        self.daily_active = np.asarray(daily_active, dtype=float)
        # r_i(t) = w_i (1 - q_i g(t)), with w_i = scale a_i f_i, q_i = 2^{-d_i/h}, g = 2^{-t/h}
        self.weight = np.asarray(scale * evidence * activity_factor, dtype=float)
        self.remaining = np.power(2.0, -np.asarray(days_exposed, dtype=float) / half_life_days)
        self.weighted_remaining = self.weight * self.remaining
        self.evidence_remaining = self.evidence * self.remaining
        self.capped = bool((self.weight > 1.0).any())  # risks above 1 must be clipped

    def __len__(self) -> int:
        return len(self.weight)

    def _growth(self, day: float) -> float:
        return float(np.power(2.0, -day / self.half_life_days))

    def risk(self, day: float, index: np.ndarray | None = None) -> np.ndarray:
        """``r_i(day)``: each user's second-disruption risk if moved ``day`` days in."""
        w = self.weight if index is None else self.weight[index]
        q = self.remaining if index is None else self.remaining[index]
        return np.asarray(np.clip(w * (1.0 - q * self._growth(day)), 0.0, 1.0), dtype=float)

    def risk_sum(self, index: np.ndarray, day: float) -> float:
        if self.capped:
            return float(self.risk(day, index).sum())
        return float(
            self.weight[index].sum() - self._growth(day) * self.weighted_remaining[index].sum()
        )

    def moved(
        self, index: np.ndarray, day: float, reach: float, horizon: float, share: float = 1.0
    ) -> Harms:
        """Harms of moving users ``index`` off the current value at ``day``, if the plan
        gets there (probability ``reach``; otherwise they wait until ``horizon``). ``share``
        of the risk falls on this move (one half for the first of a bridge's two)."""
        if len(index) == 0:
            return Harms()
        wait = max(horizon, day)
        adapting = float(self.evidence_remaining[index].sum())
        return Harms(
            second_disruptions=reach * share * self.risk_sum(index, day),
            exposed_user_days=float(self.daily_active[index].sum())
            * (reach * day + (1.0 - reach) * wait),
            new_adapters=adapting
            * (reach * (1.0 - self._growth(day)) + (1.0 - reach) * (1.0 - self._growth(wait))),
        )
