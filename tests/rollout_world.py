"""A seeded rollout simulator with ground-truth dynamics, to judge the planner's options by what
they would actually cost.

The world: each treated user truly adapts or not (``adapts``); an adapting user's adaptation
grows with exposure along the saturating curve of half-life ``half_life`` and keeps growing
while they wait; moved back, they are disrupted with probability ``severity`` times their
adaptation then (times their activity factor), half of it at each move through a bridge,
whose ``bridge_softening`` lowers it further. A disrupted user's guardrail metrics get worse
by ``shock`` standard deviations. Users are active on a day with their own probability.

The planner only sees what an analysis would give it: an adaptation p-value per user (small
for users who adapt, uniform for the others), labels from it, tenure, interactions and
recent per-user metric means (rollout.risk.score_users turns them into its risk).

:func:`run_option` plays an option's stages against the world: each stage moves its users
(GrowthBook's buckets), draws who is disrupted, and after its hold runs the guardrails' own
confidence sequences on the active users' metrics; a catch pauses the rollout, leaving the
users not yet moved on the current value until the deadline. It returns the realised second
disruptions and exposed active user-days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from analytics.inference.sequential import confidence_sequence
from analytics.inference.sufficient import SampleStats
from rollout.growthbook.rules import EVERYONE, hash_bucket
from rollout.guardrails import GUARDRAIL_TUNING
from rollout.planner import Plan, Policy, assign_cohorts, plan_rollback
from rollout.risk import ACTIVITY_HALF, RiskParams, score_users
from rollout.search import Option

AS_OF = datetime(2026, 11, 30, tzinfo=UTC)
FEATURE = "chat-model"
METRICS = ("complaint_rate", "retry_rate", "feedback_score", "pushback_rate")


@dataclass(frozen=True)
class Scenario:
    users: int
    adapted_share: float  # of treated users who truly adapt
    severity: float = 1.0  # true disruption over what full adaptation predicts
    shock: float = 1.5  # a disrupted user's metrics get worse by this many SDs
    half_life: float = 3.0
    bridge_softening: float = 1.0  # a bridged move disrupts with this share of half the risk


@dataclass
class World:
    scenario: Scenario
    frame: pd.DataFrame  # what the planner sees, one row per treated user
    adapts: np.ndarray
    days_exposed: np.ndarray
    activity_factor: np.ndarray
    daily_active: np.ndarray
    metric_sd: dict[str, float]
    bucket: np.ndarray  # GrowthBook's rollback bucket of each user

    def cohorts(self, policy: Policy) -> np.ndarray:
        return assign_cohorts(self.frame, policy, self.scenario.half_life).to_numpy()

    def adaptation(self, day: float) -> np.ndarray:
        """Each user's true adaptation ``day`` days after the plan starts."""
        return self.adapts * (1.0 - 2.0 ** (-(self.days_exposed + day) / self.scenario.half_life))


def make_world(scenario: Scenario, seed: int) -> World:
    """A treated population and the planner's view of it."""
    rng = np.random.default_rng(seed)
    n = scenario.users
    adapts = rng.random(n) < scenario.adapted_share
    days = rng.uniform(4.0, 30.0, n)
    daily_active = rng.beta(2.0, 4.0, n)
    n_post = rng.poisson(daily_active * days * 2.0)
    # Adaptation p-values: small for users who adapt (the more so the longer they were
    # exposed), uniform under the null; labels as the analysis gives them.
    strength = 1.0 - 2.0 ** (-days / scenario.half_life)
    p = np.where(adapts, rng.beta(0.15 / np.maximum(strength, 0.05), 1.0, n) ** 2, rng.random(n))
    p = np.clip(p, 1e-12, 1.0)
    label = np.where(p < 0.01, "adapted", np.where(p < 0.1, "partial", "unadapted"))
    unscored = rng.random(n) < 0.1
    label = np.where(unscored, "new", label)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{seed}-{i:06d}" for i in range(n)],
            "variation": "1",
            "first_exposure": [AS_OF - timedelta(days=float(d)) for d in days],
            "n_post": n_post,
            "adaptation_p": np.where(unscored, np.nan, p),
            "adaptation_label": label,
        }
    )
    scored = score_users(frame, pd.Timestamp(AS_OF), RiskParams(half_life_days=scenario.half_life))
    # The recent window's activity and per-user metric means, as load_plan_users gives them.
    window = 14
    active_days = rng.binomial(window, daily_active)
    scored["daily_active"] = active_days / window
    sds = {"complaint_rate": 0.11, "retry_rate": 0.13, "feedback_score": 0.3, "pushback_rate": 0.25}
    for metric, sd in sds.items():
        values = rng.normal(0.2, sd, n)
        scored[metric] = np.where(active_days > 0, values, np.nan)
    factor = 0.5 + 0.5 * n_post / (n_post + ACTIVITY_HALF)
    bucket = np.array([hash_bucket(FEATURE, u) for u in scored["user_id"]])
    return World(scenario, scored, adapts, days, factor, daily_active, sds, bucket)


def plan_for(world: World, policy: Policy, **kwargs: object) -> Plan:
    return plan_rollback(
        world.frame,
        experiment_id="sim",
        feature_key=FEATURE,
        policy=policy,
        rollback_value="old",
        current_value="new",
        as_of=AS_OF,
        created_at=AS_OF,
        half_life_days=world.scenario.half_life,
        **kwargs,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Realised:
    second_disruptions: int
    exposed_user_days: int
    paused_at: int | None

    def cost(self, exposure_day_cost: float) -> float:
        return self.second_disruptions + self.exposed_user_days / exposure_day_cost


def run_option(
    world: World, option: Option, policy: Policy, cohort: np.ndarray, rng: np.random.Generator
) -> Realised:
    """Play ``option``'s stages against the world once (see the module docstring);
    ``cohort``: each user's rollback cohort (:meth:`World.cohorts`)."""
    bucket = world.bucket
    n = len(bucket)
    left_day = np.full(n, np.nan)  # when each user left the current value
    on_old = np.zeros(n, dtype=bool)
    disrupted = np.zeros(n, dtype=bool)
    disruptions = 0
    horizon = policy.deadline_days
    day = 0.0
    alpha = policy.alpha / len(policy.guardrails)
    paused = None
    for stage in option.stages:
        if stage.kind == "freeze":
            continue
        members = np.ones(n, dtype=bool) if stage.cohort == EVERYONE else cohort == stage.cohort
        previous = 0.0 if stage.index == 0 else _previous(option, stage)
        inside = (
            members & (bucket >= previous) & ((bucket < stage.coverage) | (stage.coverage >= 1))
        )
        first = inside & np.isnan(left_day)
        again = (
            inside & ~np.isnan(left_day) & ~on_old if stage.kind == "rollback" else inside & False
        )
        level = world.adaptation(day) * world.activity_factor * world.scenario.severity
        half = 0.5 * world.scenario.bridge_softening
        chance = np.where(first, level * (half if stage.kind == "bridge" else 1.0), 0.0)
        at_left = world.adaptation(np.nan_to_num(left_day)) * world.activity_factor
        chance = np.where(again, at_left * world.scenario.severity * half, chance)
        hits = rng.random(n) < np.clip(chance, 0.0, 1.0)
        disruptions += int(hits.sum())
        disrupted |= hits
        left_day[first] = day
        if stage.kind == "rollback":
            on_old |= inside
        hold_days = stage.min_hold_hours / 24.0
        if stage.coverage < 1.0 and _caught(
            world, members, inside_arm(members, bucket, stage), disrupted, hold_days, alpha, rng
        ):
            paused = stage.index
            break
        day += hold_days
    waiting = np.isnan(left_day)
    exposure_days = np.where(waiting, max(horizon, day), left_day)
    exposed = int(
        rng.binomial(np.round(exposure_days * 24).astype(int), world.daily_active / 24.0).sum()
    )
    return Realised(disruptions, exposed, paused)


def _previous(option: Option, stage: object) -> float:
    earlier = [
        s.coverage
        for s in option.stages
        if s.index < stage.index and s.cohort == stage.cohort and s.kind == stage.kind  # type: ignore[attr-defined]
    ]
    return max(earlier, default=0.0)


def inside_arm(members: np.ndarray, bucket: np.ndarray, stage: object) -> np.ndarray:
    """The stage's moved arm: its cohort's users below its coverage."""
    return members & (bucket < stage.coverage)  # type: ignore[attr-defined]


def _caught(
    world: World,
    members: np.ndarray,
    moved: np.ndarray,
    disrupted: np.ndarray,
    hold_days: float,
    alpha: float,
    rng: np.random.Generator,
) -> bool:
    """The guardrails' confidence sequences on the users active during the hold."""
    active = members & (rng.random(len(members)) < 1.0 - (1.0 - world.daily_active) ** hold_days)
    for sd in world.metric_sd.values():
        values = rng.normal(0.0, sd, len(members)) + disrupted * world.scenario.shock * sd
        treated, control = values[active & moved], values[active & ~moved]
        if len(treated) < 2 or len(control) < 2:
            continue
        result = confidence_sequence(
            SampleStats.from_values(control),
            SampleStats.from_values(treated),
            alpha,
            tuning=GUARDRAIL_TUNING,
        )
        if result.ci_low is not None and result.ci_low > 0:
            return True
    return False


def realised_costs(world: World, plan: Plan, replications: int, seed: int) -> dict[str, float]:
    """Each option's mean realised combined cost over ``replications`` runs."""
    rng = np.random.default_rng(seed)
    cohort = world.cohorts(plan.policy)
    costs = {}
    for option in plan.options:
        runs = [run_option(world, option, plan.policy, cohort, rng) for _ in range(replications)]
        costs[option.name] = float(np.mean([r.cost(plan.policy.exposure_day_cost) for r in runs]))
    return costs
