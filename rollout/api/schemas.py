"""Request and response bodies of the flag-ramp API (pydantic; snake_case, as the contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from analytics.analysis.outcomes import GUARDRAIL_METRICS
from rollout.policy import POLICY_LIMITS, STRATEGIES

Metric = Literal["complaint_rate", "retry_rate", "feedback_score", "pushback_rate"]
assert set(Metric.__args__) == set(GUARDRAIL_METRICS)  # type: ignore[attr-defined]
Strategy = Literal["immediate", "uniform_ramp", "adaptation_aware"]
assert set(Strategy.__args__) == set(STRATEGIES)  # type: ignore[attr-defined]
FeatureValue = str | int | float | bool | dict[str, Any] | list[Any]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class GuardrailIn(Strict):
    metric: Metric
    max_regression: float = Field(gt=0, le=1e6)


def _policy_field(name: str) -> Any:
    """A request field bounded as :data:`rollout.policy.POLICY_LIMITS` says."""
    limit = POLICY_LIMITS[name]
    return Field(default=limit.default, ge=limit.low, le=limit.high, description=limit.help)


class PlanRequest(Strict):
    """A rollback plan from the experiment's latest analysis and a policy."""

    experiment_id: str = Field(min_length=1, max_length=255)
    rollback_value: FeatureValue | None = Field(
        default=None,
        description="What users are rolled back to (the control's value). Required unless "
        "the feature was pulled from GrowthBook (aftershock growthbook pull): then its "
        "experiment rule's control value.",
    )
    current_value: FeatureValue | None = Field(
        default=None,
        description="What the feature serves now (the treatment's value). Required unless "
        "the feature was pulled from GrowthBook: then its experiment rule's treatment value.",
    )
    bridge_value: FeatureValue | None = None
    record_only: bool = Field(
        default=False,
        description="Record the plan's stages without ever writing GrowthBook (mode "
        "record_only). Default: live, each stage written to GrowthBook, and refused while "
        "GrowthBook is not configured.",
    )
    strategy: Strategy | None = Field(default=None, description="Default: the recommended one.")
    analysis_id: int | None = Field(
        default=None,
        ge=1,
        le=2_147_483_647,
        description="The analysis to plan from (default: the latest of all the data).",
    )
    guardrails: list[GuardrailIn] | None = Field(default=None, min_length=1, max_length=4)
    alpha: float = _policy_field("alpha")
    power: float = _policy_field("power")
    max_step_share: float = _policy_field("max_step_share")
    deadline_days: float = _policy_field("deadline_days")
    exposure_day_cost: float = _policy_field("exposure_day_cost")
    min_hold_hours: float = _policy_field("min_hold_hours")
    max_hold_hours: float = _policy_field("max_hold_hours")


class TransitionRequest(Strict):
    reason: str | None = Field(default=None, max_length=1000)


class AdvanceRequest(Strict):
    force: bool = Field(
        default=False, description="Advance despite the guardrails (admin scope, needs a reason)."
    )
    reason: str | None = Field(default=None, max_length=1000)
    dry_run: bool = Field(
        default=False,
        description="Record the stage without writing GrowthBook (explicit, audited); a "
        "record-only plan never writes it anyway.",
    )
    supersede: bool = Field(
        default=False,
        description="When this advance starts the plan (its first stage) while another plan "
        "of the feature is in progress: abort that one (audited on both) instead of being "
        "refused.",
    )


class CohortTimingOut(BaseModel):
    users: int
    first_day: float
    last_day: float


class OptionOut(BaseModel):
    """A rollback the planner costed, with its two harms."""

    strategy: str
    name: str
    label: str
    stages: int
    duration_days: float
    expected_second_disruptions: float
    expected_disrupted_users: float  # the former name of expected_second_disruptions
    exposed_user_days: float
    expected_new_adapters: float
    combined_cost: float
    recommended: bool
    pareto: bool
    fits_deadline: bool
    timing: dict[str, CohortTimingOut]
    warnings: list[str] = []


class StageGuardrailOut(BaseModel):
    metric: str
    max_regression: float
    min_detectable_regression: float | None


class StageOut(BaseModel):
    index: int
    cohort: str
    kind: str
    coverage: float
    cumulative_coverage: float
    users: int
    cumulative_users: int
    start_day: float
    min_hold_hours: float
    power: float | None
    required_users: int
    expected_disrupted_users: float
    serving: dict[str, dict[str, float]]
    guardrails: list[StageGuardrailOut]
    saved_groups: dict[str, int]  # saved group -> members (the lists are in the document)


PlanMode = Literal["live", "record_only"]


class PlanState(BaseModel):
    """What every view of a plan shows: which plan, and where its rollout stands."""

    id: int
    experiment_id: str
    feature_key: str
    created_at: datetime
    strategy: str
    status: str
    current_stage: int
    version: int
    mode: PlanMode = Field(
        description="live: stages are written to GrowthBook; record_only: recorded only."
    )


class PlanOut(PlanState):
    pending_stage: int | None
    stage_applied_at: datetime | None
    option: str
    revision: int
    reason: str
    options: list[OptionOut]
    stages: list[StageOut]


class PlanSummary(PlanState):
    stages: int


class PlanList(BaseModel):
    data: list[PlanSummary]
    count: int


class ForcedAdvanceOut(BaseModel):
    """A stage applied over the guardrails (admin scope, with a reason)."""

    stage: int | None
    at: datetime
    actor: str = Field(description="The name of the token that forced it.")
    reason: str | None
    guardrails_action: str | None = Field(description="What the guardrails said then.")
    event_id: int = Field(description="Its event in the audit trail.")


class RampOut(BaseModel):
    """Where a rollback stands and what GrowthBook should serve."""

    plan_id: int
    feature_key: str
    status: str
    mode: PlanMode
    version: int
    current_stage: int
    stages: int
    pending_stage: int | None
    stage_applied_at: datetime | None
    serving: dict[str, dict[str, float]]
    guardrails: dict[str, Any] | None
    next_advance_at: datetime | None
    forced_advances: list[ForcedAdvanceOut] = Field(
        description="The plan's forced advances, newest first (at most "
        "10; the audit trail has them all)."
    )


class TransitionOut(BaseModel):
    plan_id: int
    status: str
    mode: PlanMode
    current_stage: int
    version: int
    recorded_only: bool | None = None
    forced: bool = False
    superseded_plan_ids: list[int] = Field(
        default=[], description="Plans of the feature this advance aborted (supersede)."
    )
    guardrails: dict[str, Any] | None = None


class ReplanRequest(Strict):
    """No fields: the replan is made from what the current stage saw."""


class ReplanOut(TransitionOut):
    revision: int = Field(description="The plan document's revision after the replan.")
    observed: dict[str, Any] = Field(
        description="What the current stage saw: planned and observed disrupted share, its "
        "interval, users compared, and the factor the remaining users' risks were scaled by."
    )
    reason: str
    stages: int


class ExperimentOut(BaseModel):
    experiment_id: str
    users: dict[str, int]
    latest_analysis_id: int | None
    analysed_at: datetime | None


class ExperimentList(BaseModel):
    data: list[ExperimentOut]
    count: int


class CohortOut(BaseModel):
    user_id: str
    plan_id: int
    feature_key: str
    cohort: str
    rolled_back: bool
    on_bridge: bool
    adaptation_label: str | None


class AuditEvent(BaseModel):
    id: int
    plan_id: int
    at: datetime
    action: str
    stage: int | None
    actor: str
    outcome: str
    forced: bool = Field(
        default=False, description="A stage applied over the guardrails (details.reason says why)."
    )
    details: dict[str, Any]


class AuditList(BaseModel):
    data: list[AuditEvent]
    count: int
    next_offset: int | None = Field(
        default=None, description="The offset of the next page (null: this is the last)."
    )


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}
