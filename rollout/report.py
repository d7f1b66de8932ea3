"""The weekly adaptation report: what one ISO week did to an experiment and what to do next.

``build_weekly_report`` gathers the figures; ``render_markdown``, ``render_html`` (one
self-contained file: inline CSS, Altair charts as inline SVG, no external URL),
``render_csv_zip`` and ``render_pdf`` (the HTML printed by headless Chromium) show them.

The drift and style-shift tables are the analysis pipeline run on the data as it stood at the
end of the week (``PeriodParams(until=...)``, the same as ``aftershock analyze --as-of``), with
the parameters of the experiment's latest stored run; these runs are not stored. Rollback
steps are the plans' recorded events (``plan_events``), so the report, the CLI and the API
show the same numbers. Nothing in the output depends on the wall clock: the same data gives
the same Markdown byte for byte.
"""

from __future__ import annotations

import html
import io
import math
import re
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import sqlalchemy as sa
import vl_convert

from analytics.adaptation import LABELS, AdaptationParams
from analytics.cohorts import Cohorts, load_cohorts
from analytics.errors import AftershockError, NotFoundError
from analytics.models import Exposure, PlanEvent, RollbackPlan
from analytics.pipeline import AnalysisParams, analysis_document, run_analysis
from analytics.store import list_plans, load_latest_analysis, load_plan_events
from analytics.user_periods import BUCKETS, PeriodParams
from rollout import browser as headless
from rollout.wording import METRIC_WORDS

REPORT_FORMATS = ("html", "md", "csv", "pdf")
MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "csv": "application/zip",
    "pdf": "application/pdf",
}
# Plan events that are steps of a rollout (``create`` is reported with the recommendation).
STAGE_ACTIONS = ("apply", "advance", "guardrails", "pause", "resume", "abort")
CHART_STYLE_METRICS = 4  # style metrics in the days-since-exposure chart, at most


class ReportError(AftershockError):
    """A report cannot be built or rendered as asked."""


class ExperimentNotFoundError(ReportError, NotFoundError):
    """The experiment has no stored exposures."""


class WeekError(ReportError, ValueError):
    """The ``week`` given is not an ISO week such as ``2026-W44``."""


# --- the week -------------------------------------------------------------------------------

_WEEK = re.compile(r"(\d{4})-W(\d{2})")


@dataclass(frozen=True)
class IsoWeek:
    """An ISO 8601 week: Monday 00:00 UTC up to (not including) the next Monday."""

    year: int
    week: int

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def start(self) -> datetime:
        monday = date.fromisocalendar(self.year, self.week, 1)
        return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=7)

    @property
    def span(self) -> str:
        """The week's days in words: "Monday 2026-10-26 to Sunday 2026-11-01" (UTC)."""
        sunday = (self.end - timedelta(days=1)).date()
        return f"Monday {self.start.date().isoformat()} to Sunday {sunday.isoformat()}"

    def previous(self) -> IsoWeek:
        year, week, _ = (self.start - timedelta(days=1)).isocalendar()
        return IsoWeek(year, week)


def parse_iso_week(text: str) -> IsoWeek:
    """``"2026-W44"`` as an :class:`IsoWeek`; a :class:`WeekError` naming ``week`` otherwise."""
    match = _WEEK.fullmatch(text.strip())
    if match is None:
        raise WeekError(f"week: {text!r} is not an ISO week; expected YYYY-Www, e.g. 2026-W44")
    year, week = int(match.group(1)), int(match.group(2))
    if not 1 <= year <= 9998:
        raise WeekError(f"week: {text!r} is out of range (years 0001 to 9998)")
    weeks = date(year, 12, 28).isocalendar().week  # the week of 28 December is the last
    if not 1 <= week <= weeks:
        raise WeekError(f"week: {text!r} does not exist; {year} has ISO weeks 01 to {weeks}")
    return IsoWeek(year, week)


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftLine:
    """One row of the behaviour drift table (``analysis.json``'s ``behavior_drift``)."""

    metric: str
    variation: str
    control_mean: float | None
    variation_mean: float | None
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    q_value: float | None
    significant: bool
    drift_began: str | None


@dataclass(frozen=True)
class StyleLine:
    """One row of the style shift (difference in differences) table."""

    metric: str
    variation: str
    did: float | None
    ci_low: float | None
    ci_high: float | None
    q_value: float | None
    significant: bool


@dataclass(frozen=True)
class DaysLine:
    """The style shift of one metric in one bucket of days since first exposure."""

    metric: str
    variation: str
    bucket: str
    did: float | None
    ci_low: float | None
    ci_high: float | None
    n_variation: int


@dataclass(frozen=True)
class LabelLine:
    """Treated users carrying an adaptation label at the end of the week and the week before."""

    label: str
    this_week: int
    previous_week: int

    @property
    def change(self) -> int:
        return self.this_week - self.previous_week


@dataclass(frozen=True)
class NewUsersLine:
    """Users of a variation first exposed during the week, and in it by the week's end."""

    variation: str
    new_users: int
    total_users: int


@dataclass(frozen=True)
class StageLine:
    """A rollout step recorded during the week: a stage applied, a guardrail decision, ..."""

    at: datetime
    plan_id: int
    action: str
    stage: int | None
    move: str  # the stage's kind, cohort and coverage, e.g. "rollback least_adapted 50%"
    outcome: str
    decision: str | None  # advance | hold | pause, for guardrail decisions
    note: str


@dataclass(frozen=True)
class WeeklyReport:
    """Everything the weekly report shows; the renderers only format it."""

    experiment_id: str
    feature_key: str | None
    week: IsoWeek
    control: str
    first_exposure: datetime | None  # the experiment's first ever
    multiple_exposures: int
    srm_p_value: float | None
    srm_ok: bool | None
    half_life_days: float | None
    behavior_drift: tuple[DriftLine, ...]
    style_shift: tuple[StyleLine, ...]
    style_by_days: tuple[DaysLine, ...]
    labels: tuple[LabelLine, ...]
    new_users: tuple[NewUsersLine, ...]
    stages: tuple[StageLine, ...]
    headline: str
    recommendation: str

    @property
    def has_users(self) -> bool:
        return any(line.total_users for line in self.new_users)

    @property
    def title(self) -> str:
        return f"Weekly adaptation report: {self.experiment_id}, {self.week.label}"


@dataclass(frozen=True)
class _Snapshot:
    """The analysis of the data as it stood at one moment (None when nobody was exposed)."""

    cohorts: Cohorts
    document: dict[str, Any] | None


def build_weekly_report(
    engine: sa.Engine, experiment_id: str, week: str, *, feature_key: str | None = None
) -> WeeklyReport:
    """The weekly report of ``experiment_id`` for the ISO ``week`` (e.g. ``"2026-W44"``), from
    the data as it stood at the end of the week; ``feature_key`` limits the plans shown."""
    iso = parse_iso_week(week)
    first = _first_exposure(engine, experiment_id)
    if first is None:
        raise ExperimentNotFoundError(
            f"experiment {experiment_id!r} has no stored exposures: "
            "ingest them first (`aftershock ingest exposures FILE`)"
        )
    params = _stored_params(engine, experiment_id)
    now = _analyse(engine, params, iso.end)
    before = _analyse(engine, params, iso.start)
    plans = [p for p in list_plans(engine, feature_key) if p.experiment_id == experiment_id]
    document = now.document
    drift = _drift_lines(document)
    style = _style_lines(document)
    labels = _label_lines(document, before.document)
    new_users = _new_users(now.cohorts, iso)
    stages = _stage_lines(engine, plans, iso)
    key = feature_key or _feature_key(engine, experiment_id)
    names = {} if document is None else dict(document.get("variation_names") or {})
    context = _Context(experiment_id, key, iso, now.cohorts.control, names, first)
    headline = (
        _headline(context, drift, style, labels, new_users, stages)
        if document is not None
        else _headline_without_users(context)
    )
    srm = {} if document is None else document["srm"]
    adaptation = {} if document is None else document["adaptation"]
    return WeeklyReport(
        experiment_id=experiment_id,
        feature_key=feature_key,
        week=iso,
        control=now.cohorts.control,
        first_exposure=first,
        multiple_exposures=now.cohorts.multiple_exposures,
        srm_p_value=srm.get("p_value"),
        srm_ok=srm.get("ok"),
        half_life_days=adaptation.get("half_life_days"),
        behavior_drift=drift,
        style_shift=style,
        style_by_days=_days_lines(document),
        labels=labels,
        new_users=new_users,
        stages=stages,
        headline=headline,
        recommendation=_recommendation(engine, context, plans, drift, document is not None),
    )


def _first_exposure(engine: sa.Engine, experiment_id: str) -> datetime | None:
    exposures = Exposure.__table__  # type: ignore[attr-defined]
    query = sa.select(sa.func.min(exposures.c.timestamp)).where(
        exposures.c.experiment_id == experiment_id
    )
    with engine.connect() as connection:
        value: datetime | None = connection.execute(query).scalar()
    return value


def _feature_key(engine: sa.Engine, experiment_id: str) -> str | None:
    """The feature whose rule ran the experiment, as the exposures name it (if they do)."""
    exposures = Exposure.__table__  # type: ignore[attr-defined]
    query = sa.select(sa.func.min(exposures.c.feature_key)).where(
        exposures.c.experiment_id == experiment_id
    )
    with engine.connect() as connection:
        value: str | None = connection.execute(query).scalar()
    return value


def _stored_params(engine: sa.Engine, experiment_id: str) -> AnalysisParams:
    """The parameters of the experiment's latest stored analysis (defaults without one), so
    the weekly figures are computed as ``aftershock analyze`` computed the stored ones."""
    run = load_latest_analysis(engine, experiment_id)
    if run is None:
        return AnalysisParams(experiment_id)
    stored = run.parameters
    periods = stored.get("periods") or {}
    try:
        adaptation = AdaptationParams(**(stored.get("adaptation") or {}))
    except TypeError:  # stored by a version with other fields
        adaptation = AdaptationParams()
    weights = stored.get("weights")
    return AnalysisParams(
        experiment_id=experiment_id,
        control=str(stored.get("control", "0")),
        weights=None if weights is None else tuple(float(w) for w in weights),
        variation_names=tuple((str(k), str(n)) for k, n in stored.get("variation_names", [])),
        alpha=float(stored.get("alpha", 0.05)),
        did_min_interactions=int(stored.get("did_min_interactions", 2)),
        periods=PeriodParams(pre_days=periods.get("pre_days", 28.0)),
        adaptation=adaptation,
    )


def _analyse(engine: sa.Engine, params: AnalysisParams, until: datetime) -> _Snapshot:
    """The analysis as of ``until``, not stored; no document when nobody was exposed yet."""
    cohorts = load_cohorts(engine, params.experiment_id, params.control, until)
    if cohorts.users.empty:
        return _Snapshot(cohorts, None)
    weights = params.weights
    if weights is not None and len(weights) != len(cohorts.variations):
        weights = None  # a variation had no users yet: check the split of those seen
    periods = PeriodParams(pre_days=params.periods.pre_days, until=until)
    moment = AnalysisParams(
        experiment_id=params.experiment_id,
        control=params.control,
        weights=weights,
        variation_names=params.variation_names,
        alpha=params.alpha,
        did_min_interactions=params.did_min_interactions,
        periods=periods,
        adaptation=params.adaptation,
    )
    return _Snapshot(cohorts, analysis_document(run_analysis(engine, moment)))


def _drift_lines(document: dict[str, Any] | None) -> tuple[DriftLine, ...]:
    rows = [] if document is None else document["behavior_drift"]
    return tuple(
        DriftLine(
            metric=r["metric"],
            variation=str(r["variation"]),
            control_mean=r["control_mean"],
            variation_mean=r["variation_mean"],
            effect=r["effect"],
            ci_low=r["ci_low"],
            ci_high=r["ci_high"],
            q_value=r["q_value"],
            significant=bool(r["significant"]),
            drift_began=r.get("drift_began"),
        )
        for r in rows
    )


def _style_lines(document: dict[str, Any] | None) -> tuple[StyleLine, ...]:
    rows = [] if document is None else document["style_shift"]
    return tuple(
        StyleLine(
            metric=r["metric"],
            variation=str(r["variation"]),
            did=r["did"],
            ci_low=r["ci_low"],
            ci_high=r["ci_high"],
            q_value=r["q_value"],
            significant=bool(r["significant"]),
        )
        for r in rows
    )


def _days_lines(document: dict[str, Any] | None) -> tuple[DaysLine, ...]:
    rows = [] if document is None else document.get("style_shift_by_days", [])
    return tuple(
        DaysLine(
            metric=r["metric"],
            variation=str(r["variation"]),
            bucket=r["bucket"],
            did=r["did"],
            ci_low=r["ci_low"],
            ci_high=r["ci_high"],
            n_variation=int(r["n_variation"]),
        )
        for r in rows
    )


def _label_lines(
    document: dict[str, Any] | None, previous: dict[str, Any] | None
) -> tuple[LabelLine, ...]:
    """Treated users per label (every variation but control), this week and the week before."""

    def counts(doc: dict[str, Any] | None) -> dict[str, int]:
        return {} if doc is None else dict(doc["adaptation"]["labels"])

    now, before = counts(document), counts(previous)
    return tuple(LabelLine(label, now.get(label, 0), before.get(label, 0)) for label in LABELS)


def _new_users(cohorts: Cohorts, week: IsoWeek) -> tuple[NewUsersLine, ...]:
    users = cohorts.users
    if users.empty:
        return ()
    fresh = users[users["first_exposure"] >= pd.Timestamp(week.start)]
    counted = fresh["variation"].value_counts()
    totals = cohorts.counts
    return tuple(
        NewUsersLine(v, int(counted.get(v, 0)), int(totals.get(v, 0))) for v in cohorts.variations
    )


def _stage_lines(
    engine: sa.Engine, plans: Sequence[RollbackPlan], week: IsoWeek
) -> tuple[StageLine, ...]:
    lines = []
    for plan in plans:
        assert plan.id is not None
        events = load_plan_events(engine, plan.id)
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


def _stage_line(plan: RollbackPlan, event: PlanEvent) -> StageLine:
    assert plan.id is not None
    details = event.details or {}
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
    )


def _move(plan: RollbackPlan, stage: int | None) -> str:
    stages = plan.document.get("stages", [])
    if stage is None or not 0 <= stage < len(stages):
        return ""
    spec = stages[stage]
    return f"{spec.get('kind', '')} {spec.get('cohort', '')} {float(spec['coverage']):.0%}".strip()


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
    return METRIC_WORDS.get(
        metric, (metric.replace("_", " "), None if metric.endswith("_rate") else "")
    )


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


def _by_q(lines: Sequence[DriftLine] | Sequence[StyleLine]) -> list[Any]:
    return sorted(
        (line for line in lines if line.significant),
        key=lambda line: (line.q_value if line.q_value is not None else 1.0, line.metric),
    )


def _headline(
    context: _Context,
    drift: Sequence[DriftLine],
    style: Sequence[StyleLine],
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


def _drift_sentence(context: _Context, drift: Sequence[DriftLine]) -> str:
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
        f"behaviour metrics: {_listing(parts)}."
    )


def _style_sentence(context: _Context, style: Sequence[StyleLine]) -> str:
    metrics = sorted({line.metric for line in style})
    found = [line for line in _by_q(style) if line.did is not None]
    if not found:
        return "Its users' way of writing has not shifted measurably against control's."
    several = len({line.variation for line in style}) > 1
    parts = []
    for line in found[:3]:
        what, _ = _plain(line.metric)
        where = f" ({context.variation(line.variation)})" if several else ""
        parts.append(f"{what}{where} {_change(line.metric, line.did)}")
    count = len({line.metric for line in found})
    return (
        f"Its users now write differently, beyond the change seen in control, on {count} of "
        f"{len(metrics)} style metrics: {_listing(parts)}."
    )


def _adaptation_sentence(labels: Sequence[LabelLine]) -> str:
    count = {line.label: line for line in labels}
    adapted, partial = count["adapted"], count["partial"]
    scored = sum(count[k].this_week for k in ("adapted", "partial", "unadapted"))
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
    return text + "."


def _recommendation(
    engine: sa.Engine,
    context: _Context,
    plans: Sequence[RollbackPlan],
    drift: Sequence[DriftLine],
    has_users: bool,
) -> str:
    """What to do next: the plan standing at the end of the week, or that one is needed."""
    if not has_users:
        return f"Nothing to decide yet: nobody had been exposed by the end of {context.week.label}."
    standing = [p for p in plans if _created(p) < context.week.end]
    later = [p for p in plans if _created(p) >= context.week.end]
    if standing:
        plan = standing[0]  # newest first
        return f"Plan {plan.id} ({plan.strategy}): {plan.document.get('reason', '')} " + _progress(
            engine, plan, context.week
        )
    command = (
        f"`aftershock plan --experiment {context.experiment_id} "
        f"--feature {context.feature_key or 'FEATURE'}`"
    )
    if any(line.significant for line in drift):
        text = (
            "The new version behaves measurably differently and no rollback plan existed by the "
            f"end of the week: a rollback should be planned; run {command}."
        )
    else:
        text = f"No plan yet: run {command} if the change is to be rolled back."
    if later:
        plan = later[-1]  # the first one made after the week
        text += f" (Plan {plan.id} was created later, on {_created(plan).date().isoformat()}.)"
    return text


def _created(plan: RollbackPlan) -> datetime:
    """When the plan was made: its document's ``created_at`` (the planner's "now")."""
    text = plan.document.get("created_at")
    moment = datetime.fromisoformat(text) if isinstance(text, str) else plan.created_at
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _progress(engine: sa.Engine, plan: RollbackPlan, week: IsoWeek) -> str:
    assert plan.id is not None
    events = [e for e in load_plan_events(engine, plan.id) if e.at < week.end]
    applied = [e.stage for e in events if e.action == "apply" and e.outcome == "ok"]
    last = len(plan.document.get("stages", [])) - 1
    if not applied:
        return "No stage of it had been applied by the end of the week."
    text = f"By the end of the week it had reached stage {applied[-1]} (of 0 to {last})."
    decisions = [e for e in events if e.action == "guardrails"]
    if decisions and decisions[-1].details.get("action") == "pause":
        text += " The guardrails said pause: read the reasons below before going on."
    return text


# --- tables ---------------------------------------------------------------------------------


def format_number(value: float | None, digits: int = 3, *, signed: bool = False) -> str:
    """A figure as every table shows it: fixed ``digits`` decimals (with a sign when
    ``signed``), ``-`` when there is none."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def format_p(value: float | None) -> str:
    """A p- or q-value: three decimals, ``<0.001`` below that."""
    if value is None or not math.isfinite(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def format_interval(low: float | None, high: float | None) -> str:
    return f"[{format_number(low)}, {format_number(high)}]"


@dataclass(frozen=True)
class Table:
    """A table of the report as text cells, shared by the Markdown and HTML renderers."""

    key: str
    title: str
    note: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str  # said instead of the table when it has no rows
    marked: tuple[bool, ...] = ()  # rows to highlight (significant)


def summary_rows(report: WeeklyReport) -> tuple[tuple[str, str], ...]:
    """The summary table: what, when, how many, and whether the split is sound."""
    total = sum(line.total_users for line in report.new_users)
    fresh = sum(line.new_users for line in report.new_users)
    srm = (
        "-"
        if report.srm_ok is None
        else f"{'ok' if report.srm_ok else 'MISMATCH'} (p = {format_p(report.srm_p_value)})"
    )
    half_life = (
        "not estimated"
        if report.half_life_days is None
        else f"{format_number(report.half_life_days, 1)} days"
    )
    first = "-" if report.first_exposure is None else report.first_exposure.date().isoformat()
    return (
        ("experiment", report.experiment_id),
        ("week", f"{report.week.label}: {report.week.span} (UTC)"),
        ("first exposure of the experiment", first),
        ("users by the end of the week", f"{total:,}"),
        ("new users this week", f"{fresh:,}"),
        ("multiple exposures (excluded)", f"{report.multiple_exposures:,}"),
        ("sample ratio", srm),
        ("adaptation half-life", half_life),
    )


def build_tables(report: WeeklyReport) -> tuple[Table, ...]:
    """The report's tables, in reading order, as text cells."""
    return (
        Table(
            "summary",
            "Summary",
            "",
            ("item", "value"),
            summary_rows(report),
            "",
        ),
        Table(
            "behavior_drift",
            "Behaviour drift",
            "How the new version's answers differ from control's: the difference of per-user "
            "means (variation minus control, CUPED-adjusted), its 95% CI and the "
            "Benjamini-Hochberg q-value.",
            (
                "metric",
                "variation",
                "control mean",
                "variation mean",
                "effect",
                "95% CI",
                "q",
                "significant",
                "drift began",
            ),
            tuple(
                (
                    d.metric,
                    d.variation,
                    format_number(d.control_mean),
                    format_number(d.variation_mean),
                    format_number(d.effect, signed=True),
                    format_interval(d.ci_low, d.ci_high),
                    format_p(d.q_value),
                    "yes" if d.significant else "no",
                    d.drift_began or "-",
                )
                for d in report.behavior_drift
            ),
            "No users yet: nothing to compare.",
            tuple(d.significant for d in report.behavior_drift),
        ),
        Table(
            "style_shift",
            "Style shift (difference in differences)",
            "How users' prompts changed after first exposure, beyond the change of control "
            "users over the same time.",
            ("metric", "variation", "DiD", "95% CI", "q", "significant"),
            tuple(
                (
                    s.metric,
                    s.variation,
                    format_number(s.did, signed=True),
                    format_interval(s.ci_low, s.ci_high),
                    format_p(s.q_value),
                    "yes" if s.significant else "no",
                )
                for s in report.style_shift
            ),
            "No users yet: nothing to compare.",
            tuple(s.significant for s in report.style_shift),
        ),
        Table(
            "style_shift_by_days",
            "Style shift by days since first exposure",
            "The difference in differences of the charted style metrics, per bucket of days "
            "since a user's first exposure (a growing shift is adaptation under way).",
            ("metric", "variation", *BUCKETS),
            _days_rows(report),
            "No users yet: nothing to compare.",
        ),
        Table(
            "adaptation_labels",
            "Adaptation of treated users",
            "Treated users per adaptation label at the end of the week and of the week before.",
            ("label", "this week", "previous week", "change"),
            tuple(
                (line.label, f"{line.this_week:,}", f"{line.previous_week:,}", f"{line.change:+,}")
                for line in report.labels
            ),
            "",
        ),
        Table(
            "new_users",
            "New users this week",
            "Users first exposed during the week, and all users by its end, per variation "
            "(users seen in two variations are excluded).",
            ("variation", "new users", "users by the end of the week"),
            tuple(
                (line.variation, f"{line.new_users:,}", f"{line.total_users:,}")
                for line in report.new_users
            ),
            "Nobody had been exposed by the end of the week.",
        ),
        Table(
            "stages",
            "Rollback steps this week",
            "Stages applied and guardrail decisions recorded during the week (UTC).",
            ("time", "plan", "action", "stage", "move", "outcome", "decision", "note"),
            tuple(
                (
                    s.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
                    str(s.plan_id),
                    s.action,
                    "-" if s.stage is None else str(s.stage),
                    s.move or "-",
                    s.outcome,
                    s.decision or "-",
                    s.note or "-",
                )
                for s in report.stages
            ),
            "No plan event was recorded this week.",
        ),
    )


def _chart_metrics(report: WeeklyReport) -> list[str]:
    """The style metrics worth charting: the significant ones first, then by q-value."""
    ranked = sorted(
        report.style_shift,
        key=lambda s: (not s.significant, s.q_value if s.q_value is not None else 1.0, s.metric),
    )
    chosen: list[str] = []
    for line in ranked:
        if line.metric not in chosen and line.did is not None:
            chosen.append(line.metric)
    return chosen[:CHART_STYLE_METRICS]


def _days_rows(report: WeeklyReport) -> tuple[tuple[str, ...], ...]:
    metrics = _chart_metrics(report)
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for line in report.style_by_days:
        if line.metric in metrics:
            key = (line.metric, line.variation)
            cells.setdefault(key, {})[line.bucket] = format_number(line.did, signed=True)
    ordered = sorted(cells, key=lambda k: (metrics.index(k[0]), k[1]))
    return tuple(
        (metric, variation, *(cells[(metric, variation)].get(b, "-") for b in BUCKETS))
        for metric, variation in ordered
    )


# --- Markdown -------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    lines = [f"## {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    if not table.rows:
        return [*lines, table.empty, ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return [*lines, ""]


def render_markdown(report: WeeklyReport) -> str:
    """The report as Markdown: the headline, the recommendation, then every table."""
    lines = [
        f"# {report.title}",
        "",
        f"Week {report.week.label}: {report.week.span}, UTC. Figures are the analysis of the "
        "data as it stood at the end of the week.",
        "",
        "## Headline",
        "",
        report.headline,
        "",
        f"**Recommendation.** {report.recommendation}",
        "",
    ]
    for table in build_tables(report):
        lines += _md_table(table)
    return "\n".join(lines).rstrip("\n") + "\n"


# --- charts ---------------------------------------------------------------------------------

# Attributes that could make a browser fetch something, and url(...) references.
_EXTERNAL = re.compile(
    r"""(?:\b(?:href|src|xlink:href)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//))"""
    r"""|(?:url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//))""",
    re.IGNORECASE,
)
_NAMESPACE = re.compile(r"""\sxmlns(?::\w+)?="[^"]*\"""")


def chart_svg(chart: alt.TopLevelMixin) -> str:
    """An Altair chart as an SVG element to inline in HTML, with nothing to fetch.

    vl-convert renders offline (``allowed_base_urls=[]`` refuses any data URL); the root's
    ``xmlns`` declarations are dropped because HTML places an inline ``<svg>`` in the SVG
    namespace by itself, so the report holds no URL at all.
    """
    svg = vl_convert.vegalite_to_svg(chart.to_dict(), allowed_base_urls=[])
    head, _, body = svg.partition(">")
    svg = _NAMESPACE.sub("", head) + ">" + body
    if _EXTERNAL.search(svg):
        raise ReportError("a chart's SVG refers to an external resource")
    return svg


def _labels_chart(report: WeeklyReport) -> alt.TopLevelMixin | None:
    if not any(line.this_week or line.previous_week for line in report.labels):
        return None
    previous = f"{report.week.previous().label} (previous)"
    rows = [
        {"label": line.label, "week": week, "users": count}
        for line in report.labels
        for week, count in ((previous, line.previous_week), (report.week.label, line.this_week))
    ]
    chart: alt.TopLevelMixin = (
        alt.Chart(pd.DataFrame(rows), title="Treated users by adaptation label")
        .mark_bar()
        .encode(
            x=alt.X("label:N", sort=list(LABELS), title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("week:N", sort=[previous, report.week.label]),
            y=alt.Y("users:Q", title="treated users"),
            color=alt.Color(
                "week:N",
                sort=[previous, report.week.label],
                scale=alt.Scale(range=["#b8c4d6", "#2f5d9e"]),
                legend=alt.Legend(title=None, orient="top"),
            ),
        )
        .properties(width=460, height=200)
    )
    return chart


def _days_chart(report: WeeklyReport) -> alt.TopLevelMixin | None:
    metrics = _chart_metrics(report)
    rows = [
        {
            "metric": line.metric,
            "variation": line.variation,
            "days": line.bucket,
            "did": line.did,
            "low": line.ci_low,
            "high": line.ci_high,
        }
        for line in report.style_by_days
        if line.metric in metrics and line.did is not None
    ]
    if not rows:
        return None
    several = len({row["variation"] for row in rows}) > 1
    base = alt.Chart().encode(
        x=alt.X(
            "days:O",
            scale=alt.Scale(domain=list(BUCKETS)),
            title="days since first exposure",
            axis=alt.Axis(labelAngle=0),
        ),
        color=alt.Color("variation:N", legend=alt.Legend(orient="top") if several else None),
    )
    layers = alt.layer(
        alt.Chart().mark_rule(color="#999").encode(y=alt.datum(0)),
        base.mark_errorbar().encode(
            y=alt.Y("low:Q", title="DiD (metric units)"), y2=alt.Y2("high:Q")
        ),
        base.mark_point(filled=True, size=50).encode(y=alt.Y("did:Q")),
        data=pd.DataFrame(rows),
    ).properties(width=130, height=150)
    chart: alt.TopLevelMixin = layers.facet(
        column=alt.Column("metric:N", sort=metrics, title=None),
        title="Style shift by days since first exposure (95% CI)",
    ).resolve_scale(y="independent")
    return chart


@dataclass(frozen=True)
class Figure:
    """A chart of the report, rendered as inline SVG."""

    key: str
    caption: str
    svg: str | None  # None when there is nothing to draw


def build_figures(report: WeeklyReport) -> tuple[Figure, ...]:
    """The report's two charts: adaptation labels against the week before, and the style
    shift by days since first exposure."""
    charts: list[tuple[str, str, Callable[[WeeklyReport], alt.TopLevelMixin | None]]] = [
        (
            "adaptation_labels",
            f"Treated users per adaptation label, {report.week.label} against the week before.",
            _labels_chart,
        ),
        (
            "style_shift_by_days",
            "Style shift by days since first exposure: the most significant style metrics.",
            _days_chart,
        ),
    ]
    figures = []
    for key, caption, build in charts:
        chart = build(report)
        figures.append(Figure(key, caption, None if chart is None else chart_svg(chart)))
    return tuple(figures)


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
       max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
p.period { color: #57606a; margin-top: 0; }
p.headline { font-size: 1.05rem; }
p.recommendation { background: #f6f8fa; border-left: 4px solid #2f5d9e; padding: .6rem .8rem; }
p.note { color: #57606a; font-size: .9rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f6f8fa; }
tr.significant td { background: #fff8c5; }
figure { margin: 1rem 0; break-inside: avoid; }
figcaption { color: #57606a; font-size: .85rem; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } }
"""

_NUMERIC = re.compile(r"[-+<]?[\d,]*\.?\d+|\[\S+, \S+\]")


def _html_table(table: Table) -> str:
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    title = f"<h2>{html.escape(table.title)}</h2>"
    if not table.rows:
        return f'{title}{note}<p id="{table.key}">{html.escape(table.empty)}</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for index, row in enumerate(table.rows):
        marked = index < len(table.marked) and table.marked[index]
        cells = "".join(
            f'<td class="num">{html.escape(c)}</td>'
            if _NUMERIC.fullmatch(c)
            else f"<td>{html.escape(c)}</td>"
            for c in row
        )
        body.append(f'<tr class="significant">{cells}</tr>' if marked else f"<tr>{cells}</tr>")
    return (
        f'{title}{note}<table id="{table.key}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _html_figure(figure: Figure) -> str:
    if figure.svg is None:
        return f'<p class="note">{html.escape(figure.caption)} No data yet.</p>'
    return (
        f'<figure id="chart-{figure.key}">{figure.svg}'
        f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
    )


def render_html(report: WeeklyReport) -> str:
    """The report as one self-contained HTML file: inline CSS, the charts as inline SVG, no
    script and no external URL (it opens offline and prints as is)."""
    tables = {table.key: table for table in build_tables(report)}
    figures = {figure.key: figure for figure in build_figures(report)}
    order = [
        _html_table(tables["summary"]),
        _html_table(tables["behavior_drift"]),
        _html_table(tables["style_shift"]),
        _html_figure(figures["style_shift_by_days"]),
        _html_table(tables["style_shift_by_days"]),
        _html_table(tables["adaptation_labels"]),
        _html_figure(figures["adaptation_labels"]),
        _html_table(tables["new_users"]),
        _html_table(tables["stages"]),
    ]
    title = html.escape(report.title)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_CSS}</style></head><body>"
        f"<h1>{title}</h1>"
        f'<p class="period">Week {html.escape(report.week.label)}: '
        f"{html.escape(report.week.span)}, UTC. Figures are the analysis of the data as it "
        "stood at the end of the week.</p>"
        f'<h2>Headline</h2><p class="headline" id="headline">{html.escape(report.headline)}</p>'
        f'<p class="recommendation" id="recommendation"><strong>Recommendation.</strong> '
        f"{html.escape(report.recommendation)}</p>" + "".join(order) + "</body></html>\n"
    )


# --- CSV ------------------------------------------------------------------------------------


def build_frames(report: WeeklyReport) -> dict[str, pd.DataFrame]:
    """One data frame per table, with full-precision numbers (the zip's CSV files)."""
    summary = [
        ("experiment_id", report.experiment_id),
        ("week", report.week.label),
        ("week_start", report.week.start.isoformat()),
        ("week_end", report.week.end.isoformat()),
        ("headline", report.headline),
        ("recommendation", report.recommendation),
        (
            "first_exposure",
            "" if report.first_exposure is None else report.first_exposure.isoformat(),
        ),
        ("users", str(sum(line.total_users for line in report.new_users))),
        ("new_users", str(sum(line.new_users for line in report.new_users))),
        ("multiple_exposures", str(report.multiple_exposures)),
        ("srm_p_value", "" if report.srm_p_value is None else repr(report.srm_p_value)),
        ("srm_ok", "" if report.srm_ok is None else str(report.srm_ok).lower()),
        ("half_life_days", "" if report.half_life_days is None else repr(report.half_life_days)),
    ]
    return {
        "summary": pd.DataFrame(summary, columns=["key", "value"]),
        "behavior_drift": _frame(report.behavior_drift, DriftLine),
        "style_shift": _frame(report.style_shift, StyleLine),
        "style_shift_by_days": _frame(report.style_by_days, DaysLine),
        "adaptation_labels": pd.DataFrame(
            [(x.label, x.this_week, x.previous_week, x.change) for x in report.labels],
            columns=["label", "this_week", "previous_week", "change"],
        ),
        "new_users": pd.DataFrame(
            [(x.variation, x.new_users, x.total_users) for x in report.new_users],
            columns=["variation", "new_users", "users_by_week_end"],
        ),
        "stages": pd.DataFrame(
            [
                (
                    x.at.isoformat(),
                    x.plan_id,
                    x.action,
                    x.stage,
                    x.move,
                    x.outcome,
                    x.decision,
                    x.note,
                )
                for x in report.stages
            ],
            columns=["at", "plan_id", "action", "stage", "move", "outcome", "decision", "note"],
        ),
    }


def _frame(lines: Sequence[Any], kind: type[Any]) -> pd.DataFrame:
    columns = list(kind.__dataclass_fields__)
    return pd.DataFrame([[getattr(x, c) for c in columns] for x in lines], columns=columns)


def render_csv_zip(report: WeeklyReport) -> bytes:
    """A zip of one CSV per table (``summary.csv``, ``behavior_drift.csv``, ...); the same
    report gives the same bytes (fixed member times)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, frame in build_frames(report).items():
            member = zipfile.ZipInfo(f"{name}.csv", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(member, frame.to_csv(index=False, lineterminator="\n"))
    return buffer.getvalue()


# --- PDF ------------------------------------------------------------------------------------


def find_chromium() -> str:
    """The Chromium executable PDFs are printed with, or a :class:`ReportError` saying how
    to install it."""
    executable = headless.find_chromium()
    if executable is None:
        raise ReportError(
            f"PDF needs Chromium, which is not installed: {headless.INSTALL_HINT}, or use "
            "--format html and print it from a browser"
        )
    return executable


def render_pdf(report: WeeklyReport, path: Path | str) -> None:
    """Print the HTML report to a PDF file at ``path`` with headless Chromium (Playwright).

    The page is loaded from a string and every request is aborted: the report fetches
    nothing, and this keeps it so.
    """
    executable = find_chromium()
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise ReportError("PDF needs the playwright package (`pip install playwright`)") from exc
    page_html = render_html(report)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, args=headless.CHROMIUM_ARGS
            )
            try:
                page = browser.new_page()
                page.route("**/*", lambda route: route.abort())
                page.set_content(page_html, wait_until="load")
                page.pdf(
                    path=str(path),
                    format="A4",
                    print_background=True,
                    margin={"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"},
                )
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise ReportError(f"Chromium could not print the report: {exc}") from exc


def report_bytes(report: WeeklyReport, fmt: str) -> tuple[bytes, str]:
    """The report in ``fmt`` (html, md, csv, pdf) and its media type, e.g. for an HTTP reply."""
    if fmt == "html":
        content = render_html(report).encode()
    elif fmt == "md":
        content = render_markdown(report).encode()
    elif fmt == "csv":
        content = render_csv_zip(report)
    elif fmt == "pdf":
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "report.pdf"
            render_pdf(report, target)
            content = target.read_bytes()
    else:
        raise ReportError(f"format: {fmt!r} is not one of {', '.join(REPORT_FORMATS)}")
    return content, MEDIA_TYPES[fmt]


def report_file_name(report: WeeklyReport, fmt: str) -> str:
    """``chat-model-upgrade-2026-W44.html`` (``.zip`` for csv): a name to save it under."""
    extension = "zip" if fmt == "csv" else fmt
    return f"{report.experiment_id}-{report.week.label}.{extension}"
