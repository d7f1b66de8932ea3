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


@dataclass(frozen=True)
class GuardrailSpec:
    """A guardrail metric and the largest regression tolerated (positive is worse)."""

    metric: str
    max_regression: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GuardrailSpec:
        return cls(str(data["metric"]), float(data["max_regression"]))

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "max_regression": self.max_regression}


@dataclass(frozen=True)
class PlanOption:
    """One strategy the planner compared."""

    strategy: str
    stages: int
    duration_days: float
    expected_disrupted_users: float
    warnings: list[str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanOption:
        return cls(
            strategy=str(data["strategy"]),
            stages=int(data["stages"]),
            duration_days=float(data["duration_days"]),
            expected_disrupted_users=float(data["expected_disrupted_users"]),
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
    users: int  # users this stage moves
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
            users=int(data["users"]),
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
    strategy: str  # the chosen one
    reason: str
    rollback_value: Any
    current_value: Any
    policy: dict[str, Any]  # the planner's Policy as JSON (rollout.planner.policy_document)
    options: list[PlanOption]
    cohorts: dict[str, CohortSummary]
    stages: list[PlanStage]

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
            reason=str(data.get("reason", "")),
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
