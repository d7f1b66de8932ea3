"""``plan.json`` as a typed document: what the planner writes and every surface reads.

:meth:`PlanDocument.from_json` reads the stored document (docs/DATA_CONTRACT.md), so the CLI,
the API, the dashboard and the report read the same fields the same way. A stage's
GrowthBook payloads (``growthbook``: the SDK fragment; ``rest``: the REST request bodies) stay
JSON: they are written to GrowthBook as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PLAN_MODES = {
    # mode: (as a title, what it means); every surface words a plan's mode so
    "live": ("live", "each stage is written to GrowthBook"),
    "record_only": ("record-only", "stages are recorded, GrowthBook is never written"),
}


@dataclass(frozen=True)
class GuardrailSpec:
    """A guardrail metric, the largest regression tolerated (positive is worse) and, in a
    stage, the smallest regression its test can detect with the policy's power within the
    stage's hold (None where nobody is left to compare with)."""

    metric: str
    max_regression: float
    min_detectable_regression: float | None = None

    @property
    def can_see(self) -> bool:
        """Whether the stage's test can see the tolerated regression."""
        mdr = self.min_detectable_regression
        return mdr is not None and mdr <= self.max_regression * (1 + 1e-9)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GuardrailSpec:
        mdr = data.get("min_detectable_regression")
        return cls(
            str(data["metric"]), float(data["max_regression"]), None if mdr is None else float(mdr)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "max_regression": self.max_regression,
            "min_detectable_regression": self.min_detectable_regression,
        }


@dataclass(frozen=True)
class CohortTiming:
    """When an option moves a cohort off the current value: first and last move, in days
    from the plan's start, and how many of its users it moves."""

    users: int
    first_day: float
    last_day: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CohortTiming:
        return cls(int(data["users"]), float(data["first_day"]), float(data["last_day"]))


@dataclass(frozen=True)
class PlanOption:
    """One rollback the planner costed (rollout.search): a strategy with its step schedule,
    holds and bridge, and its expected harms (rollout.harm).

    ``expected_second_disruptions``: users expected to be disrupted a second time when moved
    (``expected_disrupted_users`` is its old name); ``exposed_user_days``: active user-days on
    the current (misbehaving) value from the plan's start until each user is moved;
    ``expected_new_adapters``: users expected to adapt while they wait; ``combined_cost``: the
    two harms in second disruptions (``exposed_user_days / exposure_day_cost`` added).
    """

    strategy: str  # immediate | uniform_ramp | adaptation_aware
    name: str  # unique among the options, e.g. "adaptation_aware: 2 steps, 1x holds"
    label: str  # the option in plain words
    stages: int
    duration_days: float
    expected_second_disruptions: float
    exposed_user_days: float
    expected_new_adapters: float
    combined_cost: float
    recommended: bool
    pareto: bool  # on the front of the two harms: no option is lower on both
    fits_deadline: bool
    timing: dict[str, CohortTiming]  # cohort -> when its users move
    warnings: list[str]

    @property
    def expected_disrupted_users(self) -> float:
        """The first wave's name of ``expected_second_disruptions``."""
        return self.expected_second_disruptions

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanOption:
        second = data.get("expected_second_disruptions", data.get("expected_disrupted_users"))
        return cls(
            strategy=str(data["strategy"]),
            name=str(data.get("name", data["strategy"])),
            label=str(data.get("label", data["strategy"])),
            stages=int(data["stages"]),
            duration_days=float(data["duration_days"]),
            expected_second_disruptions=float(second),
            exposed_user_days=float(data.get("exposed_user_days", 0.0)),
            expected_new_adapters=float(data.get("expected_new_adapters", 0.0)),
            combined_cost=float(data.get("combined_cost", second)),
            recommended=bool(data.get("recommended", False)),
            pareto=bool(data.get("pareto", False)),
            fits_deadline=bool(data.get("fits_deadline", True)),
            timing={
                str(c): CohortTiming.from_json(t) for c, t in (data.get("timing") or {}).items()
            },
            warnings=[str(w) for w in data.get("warnings", [])],
        )


@dataclass(frozen=True)
class CohortSummary:
    """A rollback cohort: its users, their mean risk of a second disruption, activity."""

    users: int
    mean_risk: float
    daily_active: float


@dataclass(frozen=True)
class PlanStage:
    """One stage of the chosen strategy, with what GrowthBook is sent to apply it."""

    index: int
    cohort: str
    kind: str  # freeze | rollback | bridge
    coverage: float  # share of the cohort on ``kind``'s value after the stage
    cumulative_coverage: float  # share of the cohort off the current value after the stage
    users: int  # users this stage moves
    cumulative_users: int  # users of the cohort off the current value after the stage
    start_day: float  # when the stage is applied, in days from the plan's start
    min_hold_hours: float
    power: float | None
    required_users: int
    detect_probability: float
    expected_disrupted_users: float
    underpowered: bool
    serving: dict[str, dict[str, float]]  # rollback|bridge -> cohort -> share, after it
    guardrails: list[GuardrailSpec]
    growthbook: dict[str, Any]  # the SDK fragment: features and saved groups
    rest: dict[str, Any]  # the REST bodies: saved_groups, rules, owner_tag

    @property
    def saved_group_sizes(self) -> dict[str, int]:
        """Members of each saved group the stage's rules target."""
        groups: dict[str, list[str]] = self.growthbook.get("savedGroups", {})
        return {name: len(members) for name, members in groups.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanStage:
        power = data.get("power")
        serving = data.get("serving") or {}
        return cls(
            index=int(data["index"]),
            cohort=str(data["cohort"]),
            kind=str(data["kind"]),
            coverage=float(data["coverage"]),
            cumulative_coverage=float(data.get("cumulative_coverage", data["coverage"])),
            users=int(data["users"]),
            cumulative_users=int(data.get("cumulative_users", data["users"])),
            start_day=float(data.get("start_day", 0.0)),
            min_hold_hours=float(data["min_hold_hours"]),
            power=None if power is None else float(power),
            required_users=int(data.get("required_users", 0)),
            detect_probability=float(data.get("detect_probability", 0.0)),
            expected_disrupted_users=float(data.get("expected_disrupted_users", 0.0)),
            underpowered=bool(data.get("underpowered", False)),
            serving={
                "rollback": dict(serving.get("rollback") or {}),
                "bridge": dict(serving.get("bridge") or {}),
            },
            guardrails=[GuardrailSpec.from_json(g) for g in data.get("guardrails", [])],
            growthbook=dict(data.get("growthbook") or {}),
            rest=dict(data.get("rest") or {}),
        )


@dataclass(frozen=True)
class PlanDocument:
    """A stored rollback plan (``plan.json``)."""

    experiment_id: str
    feature_key: str
    created_at: datetime
    as_of: datetime  # the data the plan was made from ends here
    strategy: str  # the chosen option's strategy
    option: str  # the chosen option's name
    reason: str
    mode: str  # live (writes GrowthBook) | record_only
    revision: int  # 1 when made; each replan adds one
    rollback_value: Any
    current_value: Any
    policy: dict[str, Any]  # the planner's Policy as JSON (rollout.planner.policy_document)
    options: list[PlanOption]
    cohorts: dict[str, CohortSummary]
    stages: list[PlanStage]

    @property
    def chosen(self) -> PlanOption | None:
        """The option the stages come from."""
        return next((o for o in self.options if o.name == self.option), None)

    @property
    def alpha(self) -> float:
        """The guardrails' significance level."""
        return float(self.policy["alpha"])

    def stage(self, index: int) -> PlanStage | None:
        """Stage ``index``, or None past the last (or before the first)."""
        return self.stages[index] if 0 <= index < len(self.stages) else None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanDocument:
        return cls(
            experiment_id=str(data["experiment_id"]),
            feature_key=str(data["feature_key"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            as_of=datetime.fromisoformat(data["as_of"]),
            strategy=str(data["strategy"]),
            option=str(data.get("option", data["strategy"])),
            reason=str(data.get("reason", "")),
            mode=str(data.get("mode", "live")),
            revision=int(data.get("revision", 1)),
            rollback_value=data.get("rollback_value"),
            current_value=data.get("current_value"),
            policy=dict(data.get("policy") or {}),
            options=[PlanOption.from_json(o) for o in data.get("options", [])],
            cohorts={
                str(name): CohortSummary(
                    users=int(c["users"]),
                    mean_risk=float(c["mean_risk"]),
                    daily_active=float(c["daily_active"]),
                )
                for name, c in (data.get("cohorts") or {}).items()
            },
            stages=[PlanStage.from_json(s) for s in data.get("stages", [])],
        )
