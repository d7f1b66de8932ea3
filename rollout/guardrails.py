"""Stage decisions of a rollback: advance, hold or pause, from the users' guardrail metrics.

Inside a cohort, a partial stage rolls back the users whose GrowthBook hash falls below the
stage's coverage: a randomised split into users rolled back and users not yet. Each guardrail
compares the two arms' per-user means with an always-valid confidence sequence
(analytics.inference.sequential), so the stage can be checked every hour and acted on the
moment the evidence is there, without inflating the false-pause rate. Pure decision code: the
outcomes come in as a frame (analytics.analysis.outcomes.load_user_outcomes), nothing is read here.

The rules, in order:

1. ``pause`` when any guardrail shows a significant regression (the lower end of the interval
   for its harm is above 0) or the active users' split between the arms does not match the
   coverage (sample-ratio mismatch, p below ``srm_p_threshold``).
2. ``hold`` while the stage's minimum hold runs, while an arm has fewer than
   ``min_users_per_arm`` active users, or while any guardrail is not yet cleared (the upper
   end of the interval for its harm reaches its ``max_regression``: the data cannot yet rule
   out a regression larger than tolerated).
3. ``advance`` otherwise.

A stage at coverage 1 leaves nobody in the cohort to compare against: it holds until
``hold_until`` and then advances, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.analysis.outcomes import GUARDRAIL_METRICS, compute_user_metrics
from analytics.errors import ConfigError
from analytics.inference.results import ErrorCode, SrmResult
from analytics.inference.sequential import confidence_sequence
from analytics.inference.srm import SRM_THRESHOLD, srm_test
from analytics.inference.sufficient import SampleStats
from rollout.growthbook.rules import is_rolled_back

Action = Literal["advance", "hold", "pause"]
Status = Literal["regression", "cleared", "inconclusive"]

GUARDRAIL_TUNING = 1000.0
"""N* of the guardrails' confidence sequences: 1000 active users in the cohort (both arms).

The sequence is narrowest relative to a fixed-horizon interval near N* users and widens
slowly on either side. At the Bonferroni level of four guardrails (alpha 0.0125) it is 1.40
times the fixed-horizon normal interval at 1000 users, 1.46 at 300, 1.42 at 3000 and 1.59
at 100,000; tuned to gbstats' default of 5000 instead, it would be 1.93 times at 300 users
and 1.52 at 1000, and save only 0.08 at 100,000. The stages whose decisions are close are the
small ones (a few hundred to a few thousand active users, where the interval is of the order
of the tolerated regression); at large stages the standard error is so small against any
``max_regression`` that a slightly wider multiplier rarely changes a decision. (It is also
the tuning of gbstats' ``TestSequentialTTest``, which analytics.inference checks against.)
"""


@dataclass(frozen=True)
class Guardrail:
    """A metric not to let regress among rolled-back users by more than ``max_regression``.

    ``max_regression`` is the largest regression to tolerate: absolute, in the metric's unit
    (a rate as a share, 0.02 is two percentage points), positive whichever direction is worse
    for the metric (:data:`analytics.analysis.outcomes.GUARDRAIL_METRICS`).
    """

    metric: str
    max_regression: float

    def __post_init__(self) -> None:
        if self.metric not in GUARDRAIL_METRICS:
            known = ", ".join(GUARDRAIL_METRICS)
            raise ConfigError(f"guardrail metric {self.metric!r} is not one of {known}")
        if not (math.isfinite(self.max_regression) and self.max_regression > 0):
            raise ConfigError(
                f"max_regression of guardrail {self.metric} must be a positive number, "
                f"got {self.max_regression}"
            )


@dataclass(frozen=True)
class GuardrailParams:
    """How strictly a stage is judged.

    ``alpha`` bounds the chance that a stage without any regression is ever paused by its
    guardrails, however often it is checked (split equally among the guardrails);
    ``tuning`` is the confidence sequences' N* (:data:`GUARDRAIL_TUNING`);
    ``srm_p_threshold`` is GrowthBook's sample-ratio-mismatch threshold;
    ``min_users_per_arm`` the active users each arm needs before a stage may advance;
    ``min_rolled_back_users`` the active rolled-back users the plan sized the stage's test for.
    ``require_clearance``: advance only once every guardrail's interval rules out its largest
    tolerated regression (a non-inferiority test, which a small cohort may take weeks to
    pass); when False, a stage advances once it has the planned sample and no regression is
    significant, the fixed-horizon power the planner sized the hold for.
    """

    alpha: float = 0.05
    tuning: float = GUARDRAIL_TUNING
    srm_p_threshold: float = SRM_THRESHOLD
    min_users_per_arm: int = 30
    min_rolled_back_users: int = 0
    require_clearance: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"alpha must lie in (0, 1), got {self.alpha}")
        if not (math.isfinite(self.tuning) and self.tuning > 0):
            raise ConfigError(f"tuning must be a positive number, got {self.tuning}")
        if not 0.0 < self.srm_p_threshold < 1.0:
            raise ConfigError(f"srm_p_threshold must lie in (0, 1), got {self.srm_p_threshold}")
        if self.min_users_per_arm < 2:
            raise ConfigError(f"min_users_per_arm must be 2 or more, got {self.min_users_per_arm}")


@dataclass(frozen=True)
class GuardrailCheck:
    """One guardrail at one look: rolled-back against not-yet-rolled-back users.

    ``harm`` is the difference of the arms' means (rolled back minus not) signed so that a
    positive value is worse for the rolled-back users; ``ci_low``/``ci_high`` bound it with an
    always-valid confidence sequence at the decision's per-guardrail level. ``*_users`` count
    the users with a value of the metric in each arm. Figures are ``None`` when ``error``
    says why they could not be computed.
    """

    metric: str
    rolled_back_mean: float | None
    not_rolled_back_mean: float | None
    harm: float | None
    ci_low: float | None
    ci_high: float | None
    rolled_back_users: int
    not_rolled_back_users: int
    max_regression: float
    status: Status
    error: str | None = None


@dataclass(frozen=True)
class GuardrailDecision:
    """What to do with a stage, why, and the figures behind it.

    ``reasons`` are plain-English sentences with the figures, the deciding ones first.
    ``srm`` tests the split of the users active in the window between the arms against
    ``coverage`` : ``1 - coverage``. ``alpha_per_guardrail`` is ``params.alpha`` divided by
    the number of guardrails (Bonferroni), the level of each check's interval.
    """

    action: Action
    reasons: tuple[str, ...]
    checks: tuple[GuardrailCheck, ...]
    srm: SrmResult
    rolled_back_active_users: int
    not_rolled_back_active_users: int
    coverage: float
    alpha_per_guardrail: float
    hold_until: datetime
    decided_at: datetime
    params: GuardrailParams

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON-safe data: snake_case keys, ISO-8601 times, NaN as null."""
        srm = self.srm
        return {
            "action": self.action,
            "reasons": list(self.reasons),
            "coverage": self.coverage,
            "alpha_per_guardrail": self.alpha_per_guardrail,
            "hold_until": self.hold_until.isoformat(),
            "decided_at": self.decided_at.isoformat(),
            "active_users": {
                "rolled_back": self.rolled_back_active_users,
                "not_rolled_back": self.not_rolled_back_active_users,
            },
            "srm": {
                "p_value": _json_float(srm.p_value),
                "chi2": _json_float(srm.chi2),
                "ok": bool(srm.ok),
                "df": int(srm.df),
                "error": None if srm.error is None else str(srm.error),
            },
            "checks": [_check_dict(check) for check in self.checks],
            "params": asdict(self.params),
        }


def _json_float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _check_dict(check: GuardrailCheck) -> dict[str, Any]:
    out = asdict(check)
    for key, value in out.items():
        if isinstance(value, float):
            out[key] = _json_float(value)
    out["error"] = None if check.error is None else str(check.error)
    return out


def _utc(value: datetime) -> datetime:
    """Naive datetimes are UTC, as everywhere in Aftershock."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _signed(value: float) -> str:
    return f"{value:+.4g}"


def _percent(share: float) -> str:
    return f"{100 * share:.4g}%"


def assign_arms(
    user_ids: Sequence[str], feature_key: str, coverage: float
) -> npt.NDArray[np.bool_]:
    """Whether each user is rolled back at ``coverage``: GrowthBook's hash with the
    rollback's fixed seed, exactly as the stage's force rule serves them
    (:func:`rollout.growthbook.rules.is_rolled_back`)."""
    if not 0.0 <= coverage <= 1.0:
        raise ConfigError(f"coverage must lie in [0, 1], got {coverage}")
    return np.fromiter(
        (is_rolled_back(feature_key, str(u), coverage) for u in user_ids),
        dtype=bool,
        count=len(user_ids),
    )


def _check(
    guardrail: Guardrail,
    values: npt.NDArray[np.float64],
    rolled_back: npt.NDArray[np.bool_],
    alpha: float,
    tuning: float,
) -> GuardrailCheck:
    has_value = ~np.isnan(values)
    treated = values[rolled_back & has_value]
    control = values[~rolled_back & has_value]
    treated_mean = float(treated.mean()) if treated.size else None
    control_mean = float(control.mean()) if control.size else None
    sign = GUARDRAIL_METRICS[guardrail.metric]
    result = confidence_sequence(
        SampleStats.from_values(control), SampleStats.from_values(treated), alpha, tuning=tuning
    )
    harm = ci_low = ci_high = None
    status: Status = "inconclusive"
    if treated_mean is not None and control_mean is not None:
        harm = sign * (treated_mean - control_mean)
    if result.ci_low is not None and result.ci_high is not None:
        # For a metric where lower is worse, the harm's interval is the mirrored difference's.
        ci_low, ci_high = sorted((sign * result.ci_low, sign * result.ci_high))
        if ci_low > 0:
            status = "regression"
        elif ci_high < guardrail.max_regression:
            status = "cleared"
    return GuardrailCheck(
        metric=guardrail.metric,
        rolled_back_mean=treated_mean,
        not_rolled_back_mean=control_mean,
        harm=harm,
        ci_low=ci_low,
        ci_high=ci_high,
        rolled_back_users=int(treated.size),
        not_rolled_back_users=int(control.size),
        max_regression=guardrail.max_regression,
        status=status,
        error=None if result.error is None else str(result.error),
    )


def _interval(check: GuardrailCheck, level: float) -> str:
    assert check.ci_low is not None and check.ci_high is not None
    low, high = _signed(check.ci_low), _signed(check.ci_high)
    return f"always-valid {_percent(level)} interval [{low}, {high}]"


def _means(check: GuardrailCheck) -> str:
    assert check.rolled_back_mean is not None and check.not_rolled_back_mean is not None
    return (
        f"{_num(check.rolled_back_mean)} among {check.rolled_back_users} rolled-back users "
        f"against {_num(check.not_rolled_back_mean)} among {check.not_rolled_back_users} "
        "not yet rolled back"
    )


def _regression_reason(check: GuardrailCheck, level: float) -> str:
    assert check.harm is not None
    return (
        f"{check.metric} regressed for rolled-back users: {_means(check)} "
        f"(harm {_signed(check.harm)}, {_interval(check, level)}, entirely above zero)."
    )


def _not_cleared_reason(check: GuardrailCheck, level: float) -> str:
    if check.error is not None:
        return (
            f"{check.metric} cannot be compared yet ({check.error}): "
            f"{check.rolled_back_users} rolled-back and {check.not_rolled_back_users} "
            "not-yet-rolled-back users have a value."
        )
    assert check.harm is not None
    return (
        f"{check.metric} is not cleared yet: {_means(check)} (harm {_signed(check.harm)}, "
        f"{_interval(check, level)}); the data cannot yet rule out a regression of "
        f"{_num(check.max_regression)}, the largest tolerated."
    )


def _cleared_reason(check: GuardrailCheck, level: float) -> str:
    assert check.harm is not None
    return (
        f"{check.metric} cleared: {_means(check)} (harm {_signed(check.harm)}, "
        f"{_interval(check, level)}, below the tolerated {_num(check.max_regression)})."
    )


def _within_reason(check: GuardrailCheck, level: float) -> str:
    if check.harm is None:
        return f"{check.metric} could not be compared ({check.error}); no regression seen."
    return (
        f"{check.metric}: {_means(check)} (harm {_signed(check.harm)}, "
        f"{_interval(check, level)}): no significant regression."
    )


def _srm_reason(srm: SrmResult, rolled: int, not_rolled: int, coverage: float) -> str:
    return (
        f"The users active in the window split {rolled} rolled back to {not_rolled} not yet, "
        f"against an expected {_percent(coverage)} to {_percent(1 - coverage)} "
        f"(sample-ratio mismatch, p = {srm.p_value:.3g}): the arms differ in who is active or "
        "logged, so their comparison cannot be trusted."
    )


def _full_coverage(
    guardrails: Sequence[Guardrail],
    metrics: pd.DataFrame,
    rolled_back: npt.NDArray[np.bool_],
    counts: tuple[int, int],
    hold_until: datetime,
    now: datetime,
    alpha: float,
    params: GuardrailParams,
) -> GuardrailDecision:
    reasons = [
        "Coverage is 100%: every user of the cohort is rolled back, so no one is left to "
        "compare against and no guardrail can be tested."
    ]
    if now < hold_until:
        action: Action = "hold"
        reasons.append(f"Holding until the stage's hold ends at {hold_until.isoformat()}.")
    else:
        action = "advance"
        reasons.append(f"The stage's hold ended at {hold_until.isoformat()}: advancing.")
    report = []
    for guardrail in guardrails:
        values = metrics[guardrail.metric].to_numpy(dtype="float64")
        present = values[rolled_back & ~np.isnan(values)]
        report.append(
            GuardrailCheck(
                metric=guardrail.metric,
                rolled_back_mean=float(present.mean()) if present.size else None,
                not_rolled_back_mean=None,
                harm=None,
                ci_low=None,
                ci_high=None,
                rolled_back_users=int(present.size),
                not_rolled_back_users=0,
                max_regression=guardrail.max_regression,
                status="inconclusive",
                error=str(ErrorCode.TOO_FEW_VARIATIONS),
            )
        )
    return GuardrailDecision(
        action=action,
        reasons=tuple(reasons),
        checks=tuple(report),
        srm=srm_test(list(counts), [1.0, 0.0], params.srm_p_threshold),
        rolled_back_active_users=counts[0],
        not_rolled_back_active_users=counts[1],
        coverage=1.0,
        alpha_per_guardrail=alpha,
        hold_until=hold_until,
        decided_at=now,
        params=params,
    )


def decide_stage(
    outcomes: pd.DataFrame,
    rolled_back: npt.ArrayLike,
    *,
    coverage: float,
    guardrails: Sequence[Guardrail],
    hold_until: datetime,
    now: datetime,
    params: GuardrailParams = GuardrailParams(),
) -> GuardrailDecision:
    """Advance, hold or pause a stage, from its users' outcomes since it started.

    Parameters
    ----------
    outcomes : DataFrame
        One row per user of the cohort, as :func:`analytics.analysis.outcomes.load_user_outcomes`
        returns it for the window since the stage began; users with ``n == 0`` were not
        active and count in neither arm.
    rolled_back : array_like of bool
        Per row of ``outcomes``, whether the stage rolls that user back (:func:`assign_arms`).
    coverage : float
        The stage's share of the cohort rolled back, in (0, 1].
    guardrails : sequence of Guardrail
        At most one per metric. Each is checked at ``params.alpha / len(guardrails)``
        (Bonferroni), so the chance that a stage without any regression is ever paused by a
        guardrail stays (asymptotically) at most ``params.alpha``, however often it is decided.
    hold_until, now : datetime
        The end of the stage's minimum hold and the time of the decision (naive = UTC).
    params : GuardrailParams
        Levels, N*, the SRM threshold and the active users each arm needs.

    Returns
    -------
    GuardrailDecision
        The action (rules in the module docstring), the reasons, one check per guardrail and
        the SRM test of the active users' split.

    Raises
    ------
    ConfigError
        For a coverage outside (0, 1] (at 0 nobody is rolled back: no stage to judge) or two
        guardrails on the same metric.
    """
    if not 0.0 < coverage <= 1.0:
        raise ConfigError(f"a stage's coverage must lie in (0, 1], got {coverage}")
    metrics_seen = [g.metric for g in guardrails]
    if len(set(metrics_seen)) != len(metrics_seen):
        raise ConfigError(f"guardrails repeat a metric: {metrics_seen}")
    arm = np.asarray(rolled_back, dtype=bool).ravel()
    if arm.size != len(outcomes):
        raise ValueError(f"{arm.size} arm flags for {len(outcomes)} users")
    hold_until, now = _utc(hold_until), _utc(now)
    active = outcomes["n"].to_numpy() > 0
    counts = (int(np.sum(active & arm)), int(np.sum(active & ~arm)))
    alpha = params.alpha / max(len(guardrails), 1)
    level = 1.0 - alpha
    metrics = compute_user_metrics(outcomes)

    if coverage >= 1.0:
        return _full_coverage(guardrails, metrics, arm, counts, hold_until, now, alpha, params)

    # Over active users only: every cohort member is assigned by the hash, so the full list
    # always splits as expected. Among the active, a mismatch means the arms differ in who
    # uses the feature (or whose use is logged), which biases every comparison below.
    srm = srm_test(list(counts), [coverage, 1.0 - coverage], params.srm_p_threshold)
    checks = tuple(
        _check(g, metrics[g.metric].to_numpy(dtype="float64"), arm, alpha, params.tuning)
        for g in guardrails
    )

    def decision(action: Action, reasons: Sequence[str]) -> GuardrailDecision:
        return GuardrailDecision(
            action=action,
            reasons=tuple(reasons),
            checks=checks,
            srm=srm,
            rolled_back_active_users=counts[0],
            not_rolled_back_active_users=counts[1],
            coverage=coverage,
            alpha_per_guardrail=alpha,
            hold_until=hold_until,
            decided_at=now,
            params=params,
        )

    pause = [_regression_reason(c, level) for c in checks if c.status == "regression"]
    if not srm.ok:
        pause.append(_srm_reason(srm, *counts, coverage))
    if pause:
        return decision("pause", pause)

    hold = []
    if now < hold_until:
        hold.append(f"The stage's minimum hold runs until {hold_until.isoformat()}.")
    for name, users in zip(("rolled-back", "not-yet-rolled-back"), counts, strict=True):
        if users < params.min_users_per_arm:
            hold.append(
                f"Only {users} {name} users were active in the window; each arm needs at "
                f"least {params.min_users_per_arm}."
            )
    if counts[0] < params.min_rolled_back_users:
        hold.append(
            f"{counts[0]} rolled-back users were active; the plan sized this stage's test for "
            f"{params.min_rolled_back_users}."
        )
    if params.require_clearance:
        hold += [_not_cleared_reason(c, level) for c in checks if c.status != "cleared"]
    if hold:
        return decision("hold", hold)

    if not checks:
        advance = ["No guardrails are configured and the hold has ended."]
    elif params.require_clearance or all(c.status == "cleared" for c in checks):
        advance = ["Every guardrail cleared and the hold has ended."]
    else:
        advance = [
            "No guardrail shows a significant regression, the stage reached the sample its "
            "test was sized for, and the hold has ended."
        ]
    advance += [
        _cleared_reason(c, level) if c.status == "cleared" else _within_reason(c, level)
        for c in checks
    ]
    advance.append(
        f"The active users split {counts[0]} rolled back to {counts[1]} not yet, as expected "
        f"at {_percent(coverage)} coverage (sample-ratio p = {srm.p_value:.3g})."
    )
    return decision("advance", advance)
