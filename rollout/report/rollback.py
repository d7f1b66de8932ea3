"""A rollback plan in plain words, as the report and the dashboard both show it: its mode, the
exchange rate between its two harms, which stages' guardrails cannot see the tolerated
regression, and its forced advances (rollout.store.list_forced_advances) and replans
(rollout.replans) in words.

Everything here is pure: it reads the plan document (rollout.documents) and event records
(:func:`event_record`, plain dicts, so the dashboard can cache them), never the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from analytics.features.metrics import METRICS
from rollout.documents import PLAN_MODES, GuardrailSpec, PlanOption, PlanStage
from rollout.models import PlanEvent
from rollout.store import ForcedAdvance

ADVICE = (
    "use fewer, larger steps (a larger max step share) or a longer max hold, so that each "
    "stage's test sees enough users"
)


# --- words ----------------------------------------------------------------------------------


def mode_words(mode: str) -> tuple[str, str]:
    """The plan's mode as a title (``"record-only"``) and what it means."""
    return PLAN_MODES.get(mode, (mode.replace("_", " "), ""))


def exchange_rate_sentence(exposure_day_cost: float | None) -> str:
    """The policy's exchange rate between the two harms, in words: "30 exposed user-days
    (active days on the misbehaving model) count as one second disruption." (empty when
    the plan predates it)."""
    if exposure_day_cost is None:
        return ""
    rate = exposure_day_cost
    days = f"{rate:,.0f}" if float(rate).is_integer() else f"{rate:,.1f}"
    if days == "1":
        return (
            "1 exposed user-day (an active day on the misbehaving model) counts as one second "
            "disruption."
        )
    return (
        f"{days} exposed user-days (active days on the misbehaving model) count as one "
        "second disruption."
    )


def exposure_day_cost(policy: Mapping[str, Any]) -> float | None:
    """The exchange rate of a plan document's policy (None for plans made before it)."""
    value = policy.get("exposure_day_cost")
    return None if value is None else float(value)


def metric_words(metric: str) -> str:
    """A guardrail metric as a product manager reads it: "complaints"."""
    spec = METRICS.get(metric)
    return metric.replace("_", " ") if spec is None else spec.label


def format_regression(metric: str, value: float | None) -> str:
    """A regression in the metric's unit: "2.0 pts" (percentage points) for rates, "0.050"
    for scores, "-" when there is none."""
    if value is None:
        return "-"
    spec = METRICS.get(metric)
    if spec is None or spec.plain_unit is None:
        return f"{value * 100:.1f} pts"
    return f"{value:.3f}"


def option_title(option: PlanOption) -> str:
    """An option's label, or its name when the planner gave no label."""
    return option.label or option.name


# --- what the guardrails can see ------------------------------------------------------------


def blind_guardrails(stage: PlanStage) -> list[GuardrailSpec]:
    """The stage's guardrails whose test cannot detect the tolerated regression within the
    hold (the smallest detectable regression is larger). A guardrail without a test (nobody
    left to compare with, a step to 100%) is not blind: nothing would make it see."""
    return [
        g for g in stage.guardrails if g.min_detectable_regression is not None and not g.can_see
    ]


def visibility_advice(stages: Sequence[PlanStage]) -> str | None:
    """One sentence naming the stages whose guardrails cannot see the tolerated regression,
    and what to do about it; None when every tested guardrail can."""
    blind = [(stage, blind_guardrails(stage)) for stage in stages]
    blind = [(stage, specs) for stage, specs in blind if specs]
    if not blind:
        return None
    worst: dict[str, GuardrailSpec] = {}
    for _, specs in blind:
        for spec in specs:
            known = worst.get(spec.metric)
            if known is None or (spec.min_detectable_regression or 0.0) > (
                known.min_detectable_regression or 0.0
            ):
                worst[spec.metric] = spec
    numbers = ", ".join(str(stage.index) for stage, _ in blind)
    metrics = "; ".join(
        f"{metric_words(m)} (tolerated {format_regression(m, s.max_regression)}, smallest "
        f"detectable up to {format_regression(m, s.min_detectable_regression)})"
        for m, s in worst.items()
    )
    plural = len(blind) != 1
    return (
        f"Stage{'s' if plural else ''} {numbers} {'are' if plural else 'is'} too small or "
        f"too short for {'their' if plural else 'its'} guardrails to see the tolerated "
        f"regression: {metrics}. To catch a second disruption there, {ADVICE}."
    )


def guardrail_columns(stages: Sequence[PlanStage]) -> list[tuple[str, float | None]]:
    """The guardrail metrics of a plan's stages, in order, with their tolerated regression
    (None when the stages tolerate different ones)."""
    tolerated: dict[str, set[float]] = {}
    for stage in stages:
        for spec in stage.guardrails:
            tolerated.setdefault(spec.metric, set()).add(spec.max_regression)
    return [(m, next(iter(t)) if len(t) == 1 else None) for m, t in tolerated.items()]


def format_detectable(
    stage: PlanStage, metric: str, *, tolerance_shown: bool, short: bool = False
) -> str:
    """The smallest regression of ``metric`` the stage's test can detect, in words ("1.2
    pts", "3.1 pts: too coarse", or with ``short`` "3.1 pts ✗"; "no test"); with the
    tolerated one unless ``tolerance_shown`` (in a column header, say)."""
    spec = next((g for g in stage.guardrails if g.metric == metric), None)
    if spec is None:
        return "-"
    if spec.min_detectable_regression is None:
        return "no test"
    cell = format_regression(metric, spec.min_detectable_regression)
    if not tolerance_shown:
        cell += f" (tolerated {format_regression(metric, spec.max_regression)})"
    if spec.can_see:
        return cell
    return f"{cell} ✗" if short else f"{cell}: too coarse"


def describe_visibility(stage: PlanStage, *, short: bool = False) -> str:
    """Whether the stage's guardrails can see the tolerated regressions: "yes", "no:
    complaints, retries" (``short``: "no"), or "no test" (nobody is left to compare with)."""
    blind = blind_guardrails(stage)
    if blind:
        return "no" if short else "no: " + ", ".join(metric_words(g.metric) for g in blind)
    if stage.guardrails and all(g.min_detectable_regression is None for g in stage.guardrails):
        return "no test"
    return "yes"


# --- the plan's history ---------------------------------------------------------------------


def event_record(event: PlanEvent) -> dict[str, Any]:
    """A plan event as a plain record (what the dashboard caches and this module reads)."""
    return {
        "id": event.id,
        "plan_id": event.plan_id,
        "at": event.at,
        "action": event.action,
        "stage": event.stage,
        "actor": event.actor,
        "outcome": event.outcome,
        "details": dict(event.details or {}),
    }


def is_forced(details: Mapping[str, Any]) -> bool:
    """Whether an ``apply`` event's details say it was forced past the guardrails."""
    return details.get("forced") is True


def forced_by(actor: str, details: Mapping[str, Any]) -> str:
    """Who forced an advance: the details' ``forced_by`` when recorded, else the actor."""
    return str(details.get("forced_by") or actor)


def forced_words(details: Mapping[str, Any]) -> str:
    """A forced ``apply`` event in words: "forced past the guardrails (they said hold)"."""
    overridden = details.get("guardrails")
    said = (
        f" (they said {overridden['action']})"
        if isinstance(overridden, Mapping) and overridden.get("action")
        else ""
    )
    return f"forced past the guardrails{said}"


def forced_sentence(advance: ForcedAdvance) -> str:
    """A forced advance in words: who forced which stage past what, and why."""
    said = (
        f" (the guardrails said {advance.guardrails_action})" if advance.guardrails_action else ""
    )
    stage = "a stage" if advance.stage is None else f"stage {advance.stage}"
    return (
        f"{advance.actor} forced {stage} of plan {advance.plan_id} past the guardrails{said}: "
        f"{advance.reason or 'no reason recorded'}"
    )


def replan_note(details: Mapping[str, Any]) -> str:
    """What a ``replan`` event did, in words: "revision 1 to 2: <why>" (rollout.replans
    records ``from_revision``, ``to_revision`` and the reason, with the observed disruption
    in it)."""
    old, new = details.get("from_revision"), details.get("to_revision")
    head = f"revision {old} to {new}" if old is not None and new is not None else "replanned"
    reason = details.get("reason")
    return f"{head}: {reason}" if reason else head
