"""Building the weekly report: the analysis as of the week's end, the plans' events, and
the headline and recommendation in plain words."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa

from analytics.analysis.params import AnalysisParams, build_analysis_params
from analytics.documents import LABELS, SCORED_LABELS, AnalysisDocument
from analytics.features.metrics import METRICS
from analytics.inference.results import DriftRow, StyleShiftRow
from analytics.store import (
    data_end,
    data_version,
    experiment_hint,
    load_exposed_feature,
    load_exposure_span,
    load_latest_analysis,
)
from rollout.documents import PlanDocument
from rollout.models import PlanEvent
from rollout.report.cohorts import CohortCounts
from rollout.report.model import (
    STAGE_ACTIONS,
    ExperimentNotFoundError,
    IsoWeek,
    LabelLine,
    NewUsersLine,
    PlanView,
    StageLine,
    WeeklyReport,
    parse_iso_week,
)
from rollout.report.rollback import (
    exposure_day_cost,
    forced_by,
    forced_words,
    is_forced,
    mode_words,
    replan_note,
)
from rollout.report.snapshots import week_snapshots
from rollout.report.weeks import last_complete_week
from rollout.store import (
    PlanState,
    list_forced_advances,
    list_plan_states,
    load_plan_document,
    load_plan_events,
)

Row = TypeVar("Row", DriftRow, StyleShiftRow)


@dataclass(frozen=True)
class _Plan:
    """A stored plan of the experiment: where it stands, its document (plan.json) and its
    events, oldest first."""

    state: PlanState
    document: PlanDocument
    events: tuple[PlanEvent, ...]

    @property
    def id(self) -> int:
        return self.state.id

    @property
    def created(self) -> datetime:
        """When the plan was made: its document's ``created_at`` (the planner's "now")."""
        moment = self.document.created_at
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_weekly_report(
    engine: sa.Engine,
    experiment_id: str,
    week: str | None = None,
    *,
    feature_key: str | None = None,
    now: datetime | None = None,
) -> WeeklyReport:
    """The weekly report of ``experiment_id`` for the ISO ``week`` (e.g. ``"2026-W44"``), from
    the data as it stood at the end of the week; ``feature_key`` limits the plans shown.

    Without ``week``: the last complete week with data as of ``now`` (the clock's when not
    given; :func:`rollout.report.weeks.last_complete_week`)."""
    iso = None if week is None else parse_iso_week(week)
    span = load_exposure_span(engine, experiment_id)
    if span is None:
        raise ExperimentNotFoundError(
            f"experiment {experiment_id!r} has no stored exposures; "
            f"{experiment_hint(engine, experiment_id)}"
        )
    first, _ = span
    params = _stored_params(engine, experiment_id)
    version, end = data_version(engine), data_end(engine, experiment_id)
    if iso is None:
        iso = last_complete_week(experiment_id, first, end, now or datetime.now(UTC))
    before, current = week_snapshots(engine, params, iso, version, end)
    plans = _plans(engine, experiment_id, feature_key)
    document = current.document
    drift = () if document is None else tuple(document.behavior_drift)
    style = () if document is None else tuple(document.style_shift)
    labels = _label_lines(document, before.document)
    counts = current.counts
    new_users = _new_users(counts)
    stages = _stage_lines(plans, iso)
    # The feature as the exposures name it (not a later plan's): what `aftershock plan`
    # would be run with.
    key = feature_key or load_exposed_feature(engine, experiment_id)
    names = {} if document is None else dict(document.variation_names)
    context = _Context(experiment_id, key, iso, counts.control, names, first)
    headline = (
        _headline(context, drift, style, labels, new_users, stages)
        if document is not None
        else _headline_without_users(context)
    )
    return WeeklyReport(
        experiment_id=experiment_id,
        feature_key=feature_key,
        week=iso,
        control=counts.control,
        first_exposure=first,
        multiple_exposures=counts.multiple_exposures,
        srm_p_value=None if document is None else document.srm.p_value,
        srm_ok=None if document is None else document.srm.ok,
        half_life_days=None if document is None else document.adaptation.half_life_days,
        behavior_drift=drift,
        style_shift=style,
        style_by_days=() if document is None else tuple(document.style_shift_by_days),
        labels=labels,
        new_users=new_users,
        stages=stages,
        headline=headline,
        recommendation=_recommendation(context, plans, drift, document is not None),
        plan=_plan_view(engine, plans, iso),
        engineer_notes=_engineer_notes(context, plans),
    )


def _stored_params(engine: sa.Engine, experiment_id: str) -> AnalysisParams:
    """The parameters of the experiment's latest stored analysis (built as ``aftershock
    analyze`` builds them without one), so the weekly figures are computed as the stored
    ones were."""
    run = load_latest_analysis(engine, experiment_id)
    if run is None:
        return build_analysis_params(engine, experiment_id)
    return AnalysisParams.from_json(run.parameters)


def _plans(engine: sa.Engine, experiment_id: str, feature_key: str | None) -> list[_Plan]:
    """The experiment's plans (of ``feature_key``, when given), newest first."""
    plans = []
    for state in list_plan_states(engine, experiment_id=experiment_id, feature_key=feature_key):
        document = load_plan_document(engine, state.id)
        if document is not None:  # deleted since it was listed
            plans.append(_Plan(state, document, tuple(load_plan_events(engine, state.id))))
    return plans


def _standing(plans: Sequence[_Plan], week: IsoWeek) -> _Plan | None:
    """The plan standing at the end of the week: the newest made before it ended."""
    return next((plan for plan in plans if plan.created < week.end), None)


def _plan_view(engine: sa.Engine, plans: Sequence[_Plan], week: IsoWeek) -> PlanView | None:
    plan = _standing(plans, week)
    if plan is None:
        return None
    document = plan.document
    forced = [f for f in list_forced_advances(engine, plan.id) if f.at < week.end]
    return PlanView(
        plan_id=plan.id,
        mode=document.mode,
        revision=document.revision,
        option=document.option,
        exposure_day_cost=exposure_day_cost(document.policy),
        options=tuple(document.options),
        stages=tuple(replace(stage, growthbook={}, rest={}) for stage in document.stages),
        forced=tuple(sorted(forced, key=lambda f: (f.at, f.event_id))),
    )


def _label_lines(
    document: AnalysisDocument | None, previous: AnalysisDocument | None
) -> tuple[LabelLine, ...]:
    """Treated users per label (every variation but control), this week and the week before."""

    def counts(doc: AnalysisDocument | None) -> dict[str, int]:
        return {} if doc is None else dict(doc.adaptation.labels)

    now, before = counts(document), counts(previous)
    return tuple(LabelLine(label, now.get(label, 0), before.get(label, 0)) for label in LABELS)


def _new_users(counts: CohortCounts) -> tuple[NewUsersLine, ...]:
    """Per variation, the users first exposed during the week and all its users by its end."""
    if counts.empty:
        return ()
    return tuple(NewUsersLine(v, counts.new_users[v], counts.users[v]) for v in counts.variations)


def _stage_lines(plans: Sequence[_Plan], week: IsoWeek) -> tuple[StageLine, ...]:
    lines = []
    for plan in plans:
        events = plan.events
        for event in events:
            if event.action not in STAGE_ACTIONS or not week.start <= event.at < week.end:
                continue
            if event.outcome == "started" and _completed_later(event, events):
                continue  # the "ok" row that follows says it all
            lines.append(_stage_line(plan, event))
    return tuple(sorted(lines, key=lambda line: (line.at, line.plan_id)))


def _completed_later(event: PlanEvent, events: Sequence[PlanEvent]) -> bool:
    return any(
        later.action == event.action
        and later.stage == event.stage
        and later.outcome in ("ok", "failed")
        and (later.id or 0) > (event.id or 0)
        for later in events
    )


def _stage_line(plan: _Plan, event: PlanEvent) -> StageLine:
    details = event.details or {}
    forced = event.action == "apply" and is_forced(details)
    decision = None
    if event.action == "guardrails":
        decision = details.get("action")
    elif isinstance(details.get("guardrails"), dict):
        decision = details["guardrails"].get("action")
    return StageLine(
        at=event.at,
        plan_id=plan.id,
        action=event.action,
        stage=event.stage,
        move=_move(plan, event.stage),
        outcome=event.outcome,
        decision=decision,
        note=_event_note(event),
        actor=forced_by(event.actor, details) if forced else event.actor,
        forced=forced,
    )


def _move(plan: _Plan, stage: int | None) -> str:
    spec = None if stage is None else plan.document.stage(stage)
    if spec is None:
        return ""
    return f"{spec.kind} {spec.cohort} {spec.coverage:.0%}".strip()


def _event_note(event: PlanEvent) -> str:
    details = event.details or {}
    if event.action == "guardrails":
        reasons = details.get("reasons") or [""]
        return str(reasons[0])
    if event.outcome == "failed":
        return str(details.get("error", ""))
    if event.outcome == "refused":
        return str(details.get("reason", ""))
    if event.outcome == "started":
        return "write to GrowthBook started, not completed"
    if event.action == "apply" and is_forced(details):
        where = "recorded only" if details.get("recorded_only") else "written to GrowthBook"
        why = details.get("reason") or "no reason recorded"
        return f"{forced_words(details)}: {why}; {where}"
    if event.action == "replan":
        return replan_note(details)
    if event.action == "apply":
        if details.get("recorded_only"):
            return "recorded only"
        return f"written to GrowthBook (revision {details.get('revision')})"
    return str(details.get("reason") or "")


# --- the words ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    experiment_id: str
    feature_key: str | None
    week: IsoWeek
    control: str
    variation_names: dict[str, str]
    first_exposure: datetime

    def variation(self, key: str) -> str:
        if key == self.control:
            return "control"
        name = self.variation_names.get(key)
        return f"variation {key}" + (f" ({name})" if name and name != key else "")


def _plain(metric: str) -> tuple[str, str | None]:
    spec = METRICS.get(metric)
    if spec is None:
        return metric.replace("_", " "), None if metric.endswith("_rate") else ""
    return spec.label, spec.plain_unit


def _level(metric: str, value: float) -> str:
    """A metric's value in words: "61%", "154 words", "0.17"."""
    _, unit = _plain(metric)
    if unit is None:
        return f"{value:.0%}"
    if unit:
        return f"{value:,.0f} {unit}"
    return f"{value:.2f}"


def _change(metric: str, value: float) -> str:
    """A difference in words: "+13 percentage points", "+3.3 words"."""
    _, unit = _plain(metric)
    if unit is None:
        return f"{value * 100:+.0f} percentage points"
    return f"{value:+.1f} {unit}".rstrip()


def _listing(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _by_q(lines: Sequence[Row]) -> list[Row]:
    return sorted(
        (line for line in lines if line.significant),
        key=lambda line: (line.q_value if line.q_value is not None else 1.0, line.metric),
    )


def _headline(
    context: _Context,
    drift: Sequence[DriftRow],
    style: Sequence[StyleShiftRow],
    labels: Sequence[LabelLine],
    new_users: Sequence[NewUsersLine],
    stages: Sequence[StageLine],
) -> str:
    """One paragraph a product manager reads in a minute: who came, what changed, what next."""
    return " ".join(
        [
            _users_sentence(context, new_users),
            _drift_sentence(context, drift),
            _style_sentence(context, style),
            _adaptation_sentence(labels),
            _stages_sentence(stages),
        ]
    )


def _headline_without_users(context: _Context) -> str:
    return (
        f"No users had been exposed to {context.experiment_id} by the end of "
        f"{context.week.label} ({context.week.span}): its first exposure came on "
        f"{context.first_exposure.date().isoformat()}, so there is nothing to report for "
        "this week yet."
    )


def _users_sentence(context: _Context, new_users: Sequence[NewUsersLine]) -> str:
    fresh = sum(line.new_users for line in new_users)
    total = sum(line.total_users for line in new_users)
    where = f"{context.week.label} ({context.week.span})"
    if fresh == 0:
        return (
            f"No new users met {context.experiment_id} in {where}; {total:,} were in it by "
            "the end of the week."
        )
    split = _listing(
        [f"{line.new_users:,} {context.variation(line.variation)}" for line in new_users]
    )
    return (
        f"In {where}, {fresh:,} new users were first exposed to {context.experiment_id} "
        f"({split}); {total:,} were in it by the end of the week."
    )


def _drift_sentence(context: _Context, drift: Sequence[DriftRow]) -> str:
    metrics = sorted({line.metric for line in drift})
    found = _by_q(drift)
    if not found:
        return (
            f"The new version's answers do not differ measurably from control's on any of the "
            f"{len(metrics)} behaviour metrics."
        )
    several = len({line.variation for line in drift}) > 1
    parts = []
    for line in found[:3]:
        what, _ = _plain(line.metric)
        where = f" ({context.variation(line.variation)})" if several else ""
        if line.control_mean is None or line.variation_mean is None:
            parts.append(f"{what}{where}")
        else:
            after = _level(line.metric, line.variation_mean)
            parts.append(
                f"{what}{where} {after} (control {_level(line.metric, line.control_mean)})"
            )
    count = len({line.metric for line in found})
    return (
        f"Compared with control, the new version's answers differ on {count} of {len(metrics)} "
        f"behaviour metrics{_clearest(found, parts)}: {_listing(parts)}."
    )


def _style_sentence(context: _Context, style: Sequence[StyleShiftRow]) -> str:
    metrics = sorted({line.metric for line in style})
    # The between-arms comparison (all randomised users), as the table's q-values are its.
    found = [(line, line.effect) for line in _by_q(style) if line.effect is not None]
    if not found:
        return "Its users do not write measurably differently from control's."
    several = len({line.variation for line in style}) > 1
    parts = []
    for line, effect in found[:3]:
        what, _ = _plain(line.metric)
        where = f" ({context.variation(line.variation)})" if several else ""
        parts.append(f"{what}{where} {_change(line.metric, effect)}")
    count = len({line.metric for line, _ in found})
    return (
        f"Its users write differently from control's on {count} of {len(metrics)} style "
        f"metrics{_clearest(found, parts)}: {_listing(parts)}."
    )


def _clearest(found: Sequence[object], named: Sequence[str]) -> str:
    """What a list that names only some of what was found says before it."""
    return ", the clearest" if len(found) > len(named) else ""


def _adaptation_sentence(labels: Sequence[LabelLine]) -> str:
    count = {line.label: line for line in labels}
    adapted, partial = count["adapted"], count["partial"]
    scored = sum(count[k].this_week for k in SCORED_LABELS)
    if scored == 0:
        return "No treated user has enough activity yet to tell whether they adapted."
    return (
        f"{adapted.this_week:,} treated users count as adapted to it "
        f"({adapted.change:+,} on the week before) and {partial.this_week:,} as partly "
        f"adapted, of {scored:,} with enough activity to tell."
    )


def _stages_sentence(stages: Sequence[StageLine]) -> str:
    applied = [s for s in stages if s.action == "apply" and s.outcome == "ok"]
    decisions = [s for s in stages if s.decision is not None]
    if not stages:
        return "No rollback step was taken this week."
    text = (
        f"{len(applied)} rollback stage{'s' if len(applied) != 1 else ''} "
        f"{'were' if len(applied) != 1 else 'was'} applied this week"
    )
    if decisions:
        text += f"; the last guardrail decision was {decisions[-1].decision}"
    text += "."
    forced = [s for s in stages if s.forced and s.outcome == "ok"]
    if forced:
        who = _listing(sorted({s.actor for s in forced}))
        text += (
            f" {len(forced)} of them {'was' if len(forced) == 1 else 'were'} forced past the "
            f"guardrails by {who} (the reasons are in the steps below)."
        )
    return text


def _recommendation(
    context: _Context,
    plans: Sequence[_Plan],
    drift: Sequence[DriftRow],
    has_users: bool,
) -> str:
    """What to do next: the plan standing at the end of the week, or that one is needed."""
    if not has_users:
        return f"Nothing to decide yet: nobody had been exposed by the end of {context.week.label}."
    plan = _standing(plans, context.week)
    later = [p for p in plans if p.created >= context.week.end]
    if plan is not None:
        mode, meaning = mode_words(plan.document.mode)
        return " ".join(
            [
                f"Plan {plan.id}: {plan.document.reason}",
                _progress(plan, context.week),
                f"It runs {mode}" + (f": {meaning}." if meaning else "."),
            ]
        )
    where = "in the dashboard's Rollback planner (the commands are at the end, for engineers)"
    if any(line.significant for line in drift):
        text = (
            "The new version behaves measurably differently and no rollback plan existed by the "
            f"end of the week: a rollback should be planned, {where}."
        )
    else:
        text = f"No plan yet: if the change is to be rolled back, plan it {where}."
    if later:
        plan = later[-1]  # the first one made after the week
        text += f" (Plan {plan.id} was created later, on {plan.created.date().isoformat()}.)"
    return text


def _engineer_notes(context: _Context, plans: Sequence[_Plan]) -> tuple[str, ...]:
    """The commands behind the recommendation, for the engineers' section."""
    experiment, feature = context.experiment_id, context.feature_key or "FEATURE"
    plan = _standing(plans, context.week)
    notes = [
        f"aftershock report --experiment {experiment} --week {context.week.label} "
        "--out report.pdf  (this report again; .html, .md or .zip for the others)",
        f"aftershock analyze --experiment {experiment}  (the analysis on all the data now)",
    ]
    if plan is None:
        notes.insert(
            0,
            f"aftershock plan --experiment {experiment} --feature {feature}  (plan the "
            "rollback; add --record-only to try it without writing GrowthBook)",
        )
    else:
        notes.insert(
            0,
            f"aftershock guardrails --plan {plan.id}  (what the guardrails say of the current "
            "stage); POST /v1/plans/{id}/advance to move on (the flag-ramp API)".replace(
                "{id}", str(plan.id)
            ),
        )
    return tuple(notes)


def _progress(plan: _Plan, week: IsoWeek) -> str:
    events = [e for e in plan.events if e.at < week.end]
    applied = [e.stage for e in events if e.action == "apply" and e.outcome == "ok"]
    last = len(plan.document.stages) - 1
    if not applied:
        return "No stage of it had been applied by the end of the week."
    text = f"By the end of the week it had reached stage {applied[-1]} (of 0 to {last})."
    decisions = [e for e in events if e.action == "guardrails"]
    if decisions and decisions[-1].details.get("action") == "pause":
        text += " The guardrails said pause: read the reasons below before going on."
    return text
