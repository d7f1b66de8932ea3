"""The plan space: every rollback the planner considers, costed on both harms.

An option is a strategy with its step schedule, holds and (when the policy has one) bridge:

- ``immediate``: everyone back at once.
- ``uniform_ramp``: cohort-blind steps, 1 to 4 guarded ones before 100%.
- ``adaptation_aware``: users new to the experiment frozen on the old value first, then the
  cohorts from least to most adapted, each through 0 to 3 guarded steps before 100%, bridged
  cohorts (partly and fully adapted) through the bridge value first when asked.

with holds as long as the guardrails need to see the tolerated regressions (x1), twice that
(x2), or as long as they need to see the disruption expected among the moved users, within the
policy's longest. A guarded step is never smaller than the smallest share the cohort's
guardrails can see (rollout.power); a cohort too small for any gets at most one step, at half
of it, flagged. Options whose stages and holds come out the same are one. Each option's stages are
costed with rollout.harm; the options on the Pareto front of the two harms are marked, and the
one recommended is the lowest combined cost among those finishing within the deadline (whole
hours).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rollout.growthbook.rules import EVERYONE
from rollout.harm import Adaptation, Harms
from rollout.power import DISRUPTION_EFFECT_SD, PowerModel

UNEXPOSED = "unexposed"
COHORT_ORDER = ("least_adapted", "partial", "adapted")
BRIDGED = ("partial", "adapted")
COHORT_WORDS = {
    "least_adapted": "users who did not adapt",
    "partial": "partly adapted users",
    "adapted": "adapted users",
    EVERYONE: "treated users",
}
AWARE_STEPS = {"least_adapted": (0, 1), "partial": (0, 1, 2, 3), "adapted": (0, 1, 2, 3)}
UNIFORM_STEPS = (1, 2, 3, 4)


@dataclass(frozen=True)
class HoldRule:
    """How long a partial stage holds: until its guardrails see ``basis`` (the tolerated
    regressions, or the disruption expected among the moved users), times ``factor``."""

    basis: str  # tolerated | expected
    factor: float
    words: str  # in an option's label
    suffix: str  # in an option's name


HOLDS = {
    "x1": HoldRule("tolerated", 1.0, "holds sized to see the tolerated regressions", ""),
    "x2": HoldRule("tolerated", 2.0, "holds twice as long", ", holds x2"),
    "expected": HoldRule(
        "expected",
        1.0,
        "holds sized to see the disruption expected",
        ", holds to the disruption expected",
    ),
}
TOP_STEP = 0.5  # the last guarded step of a ladder moves half of the cohort


@dataclass(frozen=True)
class Step:
    cohort: str
    kind: str  # freeze | rollback | bridge
    coverage: float  # share of the cohort on the kind's value after the step
    previous: float


@dataclass(frozen=True)
class OptionSpec:
    strategy: str
    name: str
    label: str
    steps: tuple[Step, ...]
    holds: str  # a key of HOLDS


@dataclass(frozen=True)
class Stage:
    index: int
    cohort: str
    kind: str
    coverage: float
    cumulative_coverage: float  # share of the cohort off the current value after the stage
    users: int  # users this stage moves
    cumulative_users: int  # users of the cohort off the current value after the stage
    start_day: float
    min_hold_hours: int
    required_users: int  # active moved users the guardrail waits for (0: no test)
    power: float | None  # of catching the hardest tolerated regression (None: no test)
    can_see: bool  # the test sees every tolerated regression with the policy's power
    min_detectable: Mapping[str, float | None]  # per guardrail metric
    detect_probability: float  # of catching the disruption expected among the moved users
    expected_disruptions: float  # among the users it moves, if it is reached
    rollback: Mapping[str, float]  # after the stage: cohort -> share on the old value
    bridge: Mapping[str, float]  # after the stage: cohort -> share on the bridge value


@dataclass(frozen=True)
class Timing:
    users: int
    first_day: float
    last_day: float


@dataclass(frozen=True)
class Option:
    spec: OptionSpec
    stages: tuple[Stage, ...]
    duration_days: float
    harms: Harms
    combined_cost: float
    fits_deadline: bool
    timing: Mapping[str, Timing]
    warnings: tuple[str, ...]
    pareto: bool = False
    recommended: bool = False

    @property
    def strategy(self) -> str:
        return self.spec.strategy

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Population:
    """The treated users the plan moves, grouped for slicing by GrowthBook bucket."""

    cohort: np.ndarray  # per user
    bucket: np.ndarray  # per user, in [0, 1)
    adaptation: Adaptation
    moved: np.ndarray  # per user: already off the current value when the plan starts
    rolled: np.ndarray  # per user: already on the old value when the plan starts
    power: Mapping[str, PowerModel]  # per cohort and EVERYONE
    order: dict[str, np.ndarray] = field(default_factory=dict)  # cohort -> users by bucket
    sorted_buckets: dict[str, np.ndarray] = field(default_factory=dict)
    moved_before: dict[str, int] = field(default_factory=dict)  # cohort -> off the value

    def __post_init__(self) -> None:
        everyone = np.argsort(self.bucket, kind="stable")
        self.order[EVERYONE] = everyone
        self.sorted_buckets[EVERYONE] = self.bucket[everyone]
        self.moved_before[EVERYONE] = int(self.moved.sum())
        for name in COHORT_ORDER:
            members = everyone[self.cohort[everyone] == name]
            self.order[name] = members
            self.sorted_buckets[name] = self.bucket[members]
            self.moved_before[name] = int(self.moved[members].sum())

    def present(self) -> list[str]:
        return [c for c in COHORT_ORDER if len(self.order[c])]

    def between(self, cohort: str, low: float, high: float) -> np.ndarray:
        """Users of ``cohort`` with a bucket in ``[low, high)`` (all above ``low`` at 1)."""
        buckets = self.sorted_buckets[cohort]
        start = int(np.searchsorted(buckets, low, side="left"))
        stop = len(buckets) if high >= 1.0 else int(np.searchsorted(buckets, high, side="left"))
        return self.order[cohort][start:stop]


def ladder(start: float, smallest: float | None, guarded: int, max_step: float) -> list[float]:
    """Coverages from ``start`` to 1: ``guarded`` steps the guardrails can see (the first
    ``smallest`` above ``start``, the last at half the cohort, geometric between), then 100%,
    with no increment above ``max_step``. A cohort too small for any step its guardrails can
    see (``smallest`` None) gets at most one, at half of it: the most its test can see."""
    targets: list[float] = []
    if smallest is None:
        smallest, guarded = TOP_STEP - start, min(guarded, 1)
    if guarded and start + smallest <= TOP_STEP:
        first = math.ceil((start + smallest) * 1000.0 - 1e-9) / 1000.0
        if guarded == 1:
            targets = [first]
        else:
            ratio = (TOP_STEP / first) ** (1.0 / (guarded - 1))
            targets = [round(first * ratio**j, 3) for j in range(guarded)]
    out: list[float] = []
    last = start
    for target in [*targets, 1.0]:
        if target <= last + 1e-9:
            continue
        while target - last > max_step + 1e-9:
            last = round(last + max_step, 3)
            out.append(last)
        out.append(target)
        last = target
    return out


def _ladder_steps(cohort: str, kind: str, start: float, coverages: Sequence[float]) -> list[Step]:
    steps, previous = [], start
    for coverage in coverages:
        steps.append(Step(cohort, kind, coverage, previous))
        previous = coverage
    return steps


def _describe(steps: int) -> str:
    return "at once" if steps == 0 else f"in {steps + 1} steps"


def enumerate_options(
    population: Population,
    *,
    max_step_share: float,
    bridge: bool,
    start: Mapping[str, Mapping[str, float]] | None = None,
    include_uniform: bool = True,
) -> Iterator[OptionSpec]:
    """Every option for ``population``: immediate, the uniform ramps, and the
    adaptation-aware schedules (x bridge), each with each hold factor. ``start``: what is
    served when the plan starts (``{"rollback": {cohort: share}, "bridge": {...}}``)."""
    rolled = dict((start or {}).get("rollback", {}))
    bridged_now = dict((start or {}).get("bridge", {}))
    seen: set[tuple[tuple[Step, ...], str]] = set()

    def shares(cohort: str) -> tuple[float, float]:
        return rolled.get(cohort, 0.0), bridged_now.get(cohort, 0.0)

    names: set[str] = set()

    def named(name: str) -> str:
        """``name``, numbered when two different schedules would share it."""
        out, n = name, 1
        while out in names:
            n += 1
            out = f"{name} (variant {n})"
        names.add(out)
        return out

    def unique(steps: list[Step], holds: str = "x1") -> bool:
        key = (tuple(steps), holds)
        if key in seen:
            return False
        seen.add(key)
        return True

    present = [c for c in population.present() if shares(c)[0] < 1.0]  # left to move
    immediate = [Step(EVERYONE, "rollback", 1.0, 0.0)]
    if unique(immediate):
        yield OptionSpec(
            "immediate", "everyone at once", "everyone back at once", tuple(immediate), "x1"
        )
    for holds, rule in HOLDS.items():
        if include_uniform and not rolled and not bridged_now:
            smallest = population.power[EVERYONE].smallest_guardable()
            for guarded in UNIFORM_STEPS:
                steps = _ladder_steps(
                    EVERYONE, "rollback", 0.0, ladder(0.0, smallest, guarded, max_step_share)
                )
                if unique(steps, holds):
                    yield OptionSpec(
                        "uniform_ramp",
                        named(f"everyone in {len(steps)} steps{rule.suffix}"),
                        f"everyone together {_describe(len(steps) - 1)}, {rule.words}",
                        tuple(steps),
                        holds,
                    )
        choices = [AWARE_STEPS[c] for c in present]
        for bridge_on in (False, True) if bridge else (False,):
            for counts in _product(choices):
                steps = [Step(UNEXPOSED, "freeze", 1.0, 0.0)]
                words, counted = [], []
                rollbacks: list[Step] = []
                for cohort, guarded in zip(present, counts, strict=True):
                    smallest = population.power[cohort].smallest_guardable()
                    done, on_bridge = shares(cohort)
                    if bridge_on and cohort in BRIDGED and done < 1.0:
                        coverages = ladder(on_bridge, smallest, guarded, max_step_share)
                        steps += _ladder_steps(cohort, "bridge", on_bridge, coverages)
                        rollbacks += _ladder_steps(
                            cohort,
                            "rollback",
                            done,
                            ladder(done, smallest, guarded, max_step_share),
                        )
                        words.append(
                            f"{COHORT_WORDS[cohort]} {_describe(len(coverages) - 1)} via the bridge"
                        )
                    else:
                        coverages = ladder(done, smallest, guarded, max_step_share)
                        steps += _ladder_steps(cohort, "rollback", done, coverages)
                        words.append(f"{COHORT_WORDS[cohort]} {_describe(len(coverages) - 1)}")
                    counted.append(str(len(coverages)))
                steps += rollbacks
                if unique(steps, holds):
                    bridged = " via the bridge" if bridge_on else ""
                    yield OptionSpec(
                        "adaptation_aware",
                        named(f"by adaptation: {', '.join(counted)} steps{bridged}{rule.suffix}"),
                        f"{'; then '.join(words)}; {rule.words}",
                        tuple(steps),
                        holds,
                    )


def _product(choices: Sequence[Sequence[int]]) -> Iterator[tuple[int, ...]]:
    if not choices:
        yield ()
        return
    for first in choices[0]:
        for rest in _product(choices[1:]):
            yield (first, *rest)


def cost_option(
    spec: OptionSpec,
    population: Population,
    *,
    metrics: Sequence[str],
    horizon_days: float,
    exposure_day_cost: float,
    start: Mapping[str, Mapping[str, float]] | None = None,
) -> Option:
    """The option's stages, holds, detection and expected harms (rollout.harm)."""
    serving = {
        "rollback": dict((start or {}).get("rollback", {})),
        "bridge": dict((start or {}).get("bridge", {})),
    }
    users = len(population.bucket)
    exit_day = np.full(users, np.nan)
    exit_day[population.moved] = 0.0
    off_current = population.moved.copy()
    on_old = population.rolled.copy()
    adaptation = population.adaptation
    moved_of: dict[str, int] = {}
    moved_before = population.moved_before
    disrupted: dict[tuple[str, str], float] = {}  # (cohort, kind) -> expected disrupted users
    stages: list[Stage] = []
    harms = Harms()
    day, reach = 0.0, 1.0
    for index, step in enumerate(spec.steps):
        if step.kind == "freeze":
            stages.append(_freeze_stage(index, day))
            continue
        slice_ = population.between(step.cohort, step.previous, step.coverage)
        leaving = slice_[~off_current[slice_]]
        again = (
            slice_[off_current[slice_] & ~on_old[slice_]]
            if step.kind == "rollback"
            else leaving[:0]
        )
        share = 0.5 if step.kind == "bridge" else 1.0
        stage_harms = adaptation.moved(leaving, day, reach, horizon_days, share)
        conditional = adaptation.risk_sum(leaving, day) * share
        for day_left in np.unique(exit_day[again]):  # off the bridge: the other half
            half = 0.5 * adaptation.risk_sum(again[exit_day[again] == day_left], float(day_left))
            stage_harms += Harms(second_disruptions=reach * half)
            conditional += half
        harms += stage_harms
        exit_day[leaving] = day
        off_current[leaving] = True
        if step.kind == "rollback":
            on_old[slice_] = True
        moved_of[step.cohort] = moved_of.get(step.cohort, 0) + len(leaving)
        key = (step.cohort, step.kind)
        disrupted[key] = disrupted.get(key, 0.0) + conditional
        serving[step.kind][step.cohort] = step.coverage
        power = population.power[step.cohort]
        share_disrupted = disrupted[key] / max(power.cohort.users * step.coverage, 1e-12)
        rule = HOLDS[spec.holds]
        expected = share_disrupted * DISRUPTION_EFFECT_SD if rule.basis == "expected" else None
        tested = power.stage(step.coverage, rule.factor, expected)
        detect = power.detect_disruption(step.coverage, share_disrupted, tested.hold_hours)
        stages.append(
            Stage(
                index=index,
                cohort=step.cohort,
                kind=step.kind,
                coverage=step.coverage,
                cumulative_coverage=max(
                    serving["rollback"].get(step.cohort, 0.0),
                    serving["bridge"].get(step.cohort, 0.0),
                ),
                users=len(leaving) + len(again),
                cumulative_users=moved_before[step.cohort] + moved_of[step.cohort],
                start_day=day,
                min_hold_hours=tested.hold_hours,
                required_users=int(0.9 * tested.moved_active) if step.coverage < 1.0 else 0,
                power=None if step.coverage >= 1.0 else tested.power,
                can_see=tested.can_see,
                min_detectable={
                    m: tested.min_detectable(power.cohort.metric_sd.get(m, math.nan))
                    if step.coverage < 1.0
                    else None
                    for m in metrics
                },
                detect_probability=detect,
                expected_disruptions=conditional,
                rollback=dict(serving["rollback"]),
                bridge=dict(serving["bridge"]),
            )
        )
        reach *= 1.0 - detect
        day += tested.hold_hours / 24.0
    duration = stages[-1].start_day if stages else 0.0
    hours = round(duration * 24.0)
    fits = hours <= round(horizon_days * 24.0)
    timing = {}
    for cohort in COHORT_ORDER:
        members = np.flatnonzero((population.cohort == cohort) & ~population.moved)
        if len(members):
            days = exit_day[members]
            timing[cohort] = Timing(len(members), float(np.nanmin(days)), float(np.nanmax(days)))
    warnings = []
    blind = [s.index for s in stages if s.coverage < 1.0 and s.kind != "freeze" and not s.can_see]
    if blind:
        warnings.append(
            f"stages {blind} cannot see every tolerated regression within their hold (their "
            "cohorts are too small for it): they catch only larger ones (see each stage's "
            "smallest detectable regression); tolerate more or allow a longer hold"
        )
    return Option(
        spec=spec,
        stages=tuple(stages),
        duration_days=duration,
        harms=harms,
        combined_cost=harms.combined(exposure_day_cost),
        fits_deadline=fits,
        timing=timing,
        warnings=tuple(warnings),
    )


def _freeze_stage(index: int, day: float) -> Stage:
    """Users new to the experiment kept on the old value: nobody treated moves, no test."""
    return Stage(
        index=index,
        cohort=UNEXPOSED,
        kind="freeze",
        coverage=1.0,
        cumulative_coverage=1.0,
        users=0,
        cumulative_users=0,
        start_day=day,
        min_hold_hours=0,
        required_users=0,
        power=None,
        can_see=False,
        min_detectable={},
        detect_probability=0.0,
        expected_disruptions=0.0,
        rollback={},
        bridge={},
    )


def pareto_front(options: Sequence[Option]) -> set[str]:
    """Names of the options no other option beats on both harms (lower on one, no higher on
    the other)."""
    front = set()
    for option in options:
        d, x = option.harms.second_disruptions, option.harms.exposed_user_days
        dominated = any(
            o.harms.second_disruptions <= d
            and o.harms.exposed_user_days <= x
            and (o.harms.second_disruptions < d or o.harms.exposed_user_days < x)
            for o in options
        )
        if not dominated:
            front.add(option.name)
    return front
