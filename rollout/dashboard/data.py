"""Every dashboard loader, cached: results come from analytics.store, rollout.store and
rollout.plans, as for every surface, so the dashboard shows the numbers the CLI, the API and
the report show (and reads the same typed documents: ``AnalysisDocument``, ``PlanDocument``).

Caching follows what changes: a stored analysis run never changes once written, and a plan's
document only with a replan, which moves the plan's version (cached for an hour, keyed by the
run's id, the plan's id and version); the lists of runs and plans and a plan's state and
events change when someone acts (cached for seconds, and cleared by the dashboard's own
actions); the heavy aggregates (the daily series, the planner's inputs, the weekly report)
are cached for ten minutes. Nothing here scans the interactions table without a user or
experiment filter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
import streamlit as st

from analytics.analysis.user_periods import PeriodParams, load_daily
from analytics.db import ensure_schema, get_engine
from analytics.settings import get_settings
from analytics.store import (
    StoredAnalysis,
    list_analysed_experiments,
    list_exposed_experiments,
    load_analysis,
    load_analysis_users,
    load_exposure_span,
    load_latest_analysis,
    load_prompt_examples,
    users_with_text,
)
from rollout.documents import PlanDocument
from rollout.errors import FlagValuesError
from rollout.flag_values import resolve_flag_values
from rollout.guardrails import Guardrail
from rollout.models import PlanMode
from rollout.planner import Plan, Policy, choose, plan_document, plan_rollback
from rollout.plans import create_plan, load_plan_users
from rollout.policy import STRATEGIES
from rollout.ramp import evaluate_plan
from rollout.replans import replan_summary
from rollout.report.rollback import (
    event_record,
    forced_by,
    forced_words,
    is_forced,
    replan_note,
)
from rollout.store import (
    ForcedAdvance,
    PlanState,
    find_feature_key,
    list_forced_advances,
    list_plan_states,
    load_plan_document,
    load_plan_events,
)

if TYPE_CHECKING:
    from rollout.report import WeeklyReport

SHORT = 30  # seconds: lists and states that the dashboard's own actions change
MEDIUM = 600  # seconds: heavy aggregates over the logs
LONG = 3600  # seconds: documents that never change once stored (keyed by their id)
PROMPT_CHARS = 200
MEMBERS_SHOWN = 5  # saved-group members shown in a GrowthBook preview


# --- the database ---------------------------------------------------------------------------


@st.cache_resource
def _engine_for(url: str) -> sa.Engine:
    database = get_engine(url)
    ensure_schema(database)
    return database


def engine() -> sa.Engine:
    """The engine of AFTERSHOCK_DATABASE_URL (one per URL, schema upgraded once)."""
    return _engine_for(get_settings().database_url)


def database_label() -> str:
    """The database URL without its password, to say where the figures come from."""
    return sa.make_url(get_settings().database_url).render_as_string(hide_password=True)


# --- analyses -------------------------------------------------------------------------------


@st.cache_data(ttl=SHORT)
def analysed_experiments() -> list[str]:
    """Experiments with at least one stored analysis, most recent first."""
    return list_analysed_experiments(engine())


@st.cache_data(ttl=SHORT)
def exposed_experiments() -> list[str]:
    """Experiments with stored exposures (read from the exposures' primary key)."""
    return list_exposed_experiments(engine())


@st.cache_data(ttl=SHORT)
def latest_analysis(experiment_id: str) -> StoredAnalysis | None:
    """The experiment's latest stored run: its ``id``, its ``document`` (analysis.json) and
    the ``parameters`` it ran with."""
    return load_latest_analysis(engine(), experiment_id)


@st.cache_data(ttl=LONG, max_entries=8)
def analysis_users(run_id: int) -> pd.DataFrame:
    """users.csv of a stored run (one row per analysed user)."""
    users = load_analysis_users(engine(), run_id)
    users["variation"] = users["variation"].astype(str)
    return users


@st.cache_data(ttl=MEDIUM, max_entries=16)
def daily_series(experiment_id: str, pre_days: float | None, until: str | None) -> pd.DataFrame:
    """Per variation and UTC day, the behaviour metrics' daily means (one grouped query),
    over the same window as the stored run (its ``pre_days`` and ``until``)."""
    params = PeriodParams(
        pre_days=pre_days, until=None if until is None else datetime.fromisoformat(until)
    )
    return load_daily(engine(), experiment_id, params)


@st.cache_data(ttl=LONG, max_entries=8)
def score_histogram(run_id: int, control: str, bins: int = 40) -> pd.DataFrame:
    """The adaptation scores of control and treated users binned on common edges: per group
    and bin, the users and their share of the group (so groups of unequal size compare)."""
    users = analysis_users(run_id)
    scored = users[np.isfinite(users["adaptation_score"].astype("float64"))]
    if scored.empty:
        return pd.DataFrame(columns=["group", "bin_start", "bin_end", "users", "share"])
    scores = scored["adaptation_score"].astype("float64").to_numpy()
    low, high = np.quantile(scores, [0.005, 0.995])
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    treated = scored["variation"] != control
    frames = []
    for group, mask in (("control", ~treated), ("treated", treated)):
        values = np.clip(scores[mask.to_numpy()], edges[0], edges[-1])
        counts, _ = np.histogram(values, bins=edges)
        total = max(int(counts.sum()), 1)
        frames.append(
            pd.DataFrame(
                {
                    "group": group,
                    "bin_start": edges[:-1],
                    "bin_end": edges[1:],
                    "users": counts,
                    "share": counts / total,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@st.cache_data(ttl=LONG, max_entries=8)
def example_users(run_id: int, control: str, limit: int = 200) -> pd.DataFrame:
    """Treated users with interactions on both sides of their first exposure, those whose
    text is stored first (``has_text``; see AFTERSHOCK_STORE_TEXT), then most adapted first:
    candidates for the before/after prompt examples."""
    users = analysis_users(run_id)
    candidates = users[(users["variation"] != control) & (users["n_pre"] >= 2)]
    candidates = candidates[candidates["n_post"] >= 2]
    # The most adapted few thousand are enough to find examples among; asking the logs
    # which of them kept their text costs a read per user.
    candidates = candidates.sort_values(
        "adaptation_score", ascending=False, na_position="last"
    ).head(limit * 10)
    kept = users_with_text(engine(), candidates["user_id"].astype(str).tolist())
    candidates = candidates.assign(has_text=candidates["user_id"].astype(str).isin(kept))
    ordered = candidates.sort_values(
        ["has_text", "adaptation_score"], ascending=[False, False], na_position="last"
    )
    columns = [
        "user_id",
        "variation",
        "first_exposure",
        "adaptation_label",
        "adaptation_score",
        "has_text",
    ]
    return ordered[columns].head(limit).reset_index(drop=True)


@st.cache_data(ttl=MEDIUM, max_entries=64)
def prompt_examples(
    user_id: str, first_exposure: datetime, *, with_text: bool, per_side: int = 2
) -> pd.DataFrame:
    """One user's last ``per_side`` prompts before first exposure and last ``per_side`` after
    it (the most adapted ones), read through the (user, time) index; the prompt text, cut to
    ``PROMPT_CHARS`` characters, only when ``with_text``."""
    frame = load_prompt_examples(
        engine(), user_id, first_exposure, with_text=with_text, per_side=per_side
    )
    if not frame.empty:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        since = frame["timestamp"] - pd.Timestamp(first_exposure)
        frame.insert(2, "days_since_exposure", (since / pd.Timedelta(days=1)).round(1))
    if with_text and not frame.empty:
        frame["prompt"] = frame["prompt"].map(truncate)
    return frame


def truncate(text: str | None, limit: int = PROMPT_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


@st.cache_data(ttl=MEDIUM, max_entries=16)
def exposure_span(experiment_id: str) -> tuple[datetime, datetime] | None:
    """The first and last exposure of an experiment (from the exposures' primary key)."""
    return load_exposure_span(engine(), experiment_id)


@st.cache_data(ttl=MEDIUM, max_entries=16)
def feature_of(experiment_id: str) -> str | None:
    """The feature whose rule ran the experiment, as its latest plan or its exposures say."""
    return find_feature_key(engine(), experiment_id)


@st.cache_data(ttl=SHORT, max_entries=16)
def pulled_flag_values(experiment_id: str, run_id: int, feature_key: str) -> tuple[str, str]:
    """The feature's (rollback, current) values as its pulled experiment rule serves the
    analysis' control and treated variations, as the input boxes show them; empty strings
    when the feature was not pulled or its rule does not say (nothing is guessed)."""
    run = load_analysis(engine(), run_id)
    if run is None or not feature_key:
        return "", ""
    try:
        values = resolve_flag_values(
            engine(),
            run,
            feature_key=feature_key,
            rollback_value=None,
            current_value=None,
            environments=tuple(get_settings().environments()),
        )
    except FlagValuesError:
        return "", ""
    return typed_text(values[0]), typed_text(values[1])


def typed_text(value: Any) -> str:
    """A flag value as an input box shows it (strings as they are, other JSON as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


# --- stored plans ---------------------------------------------------------------------------


@st.cache_data(ttl=SHORT, max_entries=16)
def experiment_plans(experiment_id: str) -> list[PlanState]:
    """The experiment's plans, newest first: their state, without their documents (which can
    be megabytes each)."""
    return list_plan_states(engine(), experiment_id=experiment_id)


@st.cache_data(ttl=LONG, max_entries=32)
def plan_outline(plan_id: int, version: int) -> PlanDocument | None:
    """A stored plan's document with its stages' GrowthBook payloads (``growthbook``,
    ``rest``) emptied: the comparison, the policy, the cohorts and the stage figures.
    ``version`` (the plan state's) keys the cache: a replan rewrites the document and
    moves the version on."""
    document = load_plan_document(engine(), plan_id)
    if document is None:
        return None
    stages = [replace(stage, growthbook={}, rest={}) for stage in document.stages]
    return replace(document, stages=stages)


@st.cache_data(ttl=SHORT, max_entries=32)
def plan_events(plan_id: int) -> list[dict[str, Any]]:
    """A plan's audit trail, oldest first, as plain records."""
    return [event_record(event) for event in load_plan_events(engine(), plan_id)]


@st.cache_data(ttl=SHORT, max_entries=32)
def forced_advances(plan_id: int) -> list[ForcedAdvance]:
    """A plan's stages applied past the guardrails, oldest first: who, when, why."""
    return sorted(list_forced_advances(engine(), plan_id), key=lambda f: (f.at, f.event_id))


@st.cache_data(ttl=SHORT, max_entries=32)
def plan_versions(plan_id: int) -> list[dict[str, Any]]:
    """A plan's revisions, oldest first (rollout.replans.replan_summary): revision 1 when it
    was made, one more at each replan; each with ``revision``, ``at``, ``actor``, ``what``."""
    return [dict(version) for version in replan_summary(load_plan_events(engine(), plan_id))]


def latest_decision(events: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest recorded guardrail decision among a plan's events (with its ``at`` and
    ``stage``)."""
    for event in reversed(events):
        if event["action"] == "guardrails" and event["outcome"] == "ok":
            return {"at": event["at"], "stage": event["stage"], **event["details"]}
    return None


def summarise_event(event: dict[str, Any]) -> str:
    """One line on what an audit-trail event did."""
    details = event["details"]
    parts = []
    if event["action"] == "guardrails":
        parts.append(f"decision: {details.get('action')}")
        reasons = details.get("reasons") or []
        if reasons:
            parts.append(str(reasons[0]))
    if event["action"] == "create":
        parts.append(f"strategy {details.get('strategy')}")
        if details.get("mode"):
            parts.append(f"mode {str(details['mode']).replace('_', '-')}")
        if details.get("analysis_run_id") is not None:
            parts.append(f"analysis run {details['analysis_run_id']}")
    if event["action"] == "apply" and is_forced(details):
        parts.append(f"{forced_words(details)} by {forced_by(event['actor'], details)}")
    if event["action"] == "replan":
        parts.append(replan_note(details))
    before, after = details.get("before"), details.get("after")
    if (
        isinstance(before, dict)
        and isinstance(after, dict)
        and before.get("status") != after.get("status")
    ):
        parts.append(f"{before.get('status')} → {after.get('status')}")
    if details.get("recorded_only"):
        parts.append("recorded only (GrowthBook untouched)")
    elif details.get("rule_ids"):
        parts.append(f"rules {', '.join(map(str, details['rule_ids']))}")
    for key in ("reason", "error", "rerun"):
        if event["action"] == "replan" and key == "reason":
            continue  # in the replan's summary
        if details.get(key):
            parts.append(f"{key}: {details[key]}")
    return "; ".join(parts)


def evaluate_guardrails(plan_id: int) -> dict[str, Any]:
    """Judge a plan's current stage now (rollout.ramp.evaluate_plan, recorded as the CLI
    records it) and forget the cached events; return the decision."""
    decision = evaluate_plan(engine(), plan_id, actor="dashboard")
    plan_events.clear()
    experiment_plans.clear()
    return decision.to_dict()


# --- what-if plans --------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyInputs:
    """The planner page's controls: what a plan's policy and values are built from."""

    guardrails: tuple[tuple[str, float], ...]
    alpha: float
    power: float
    max_step_share: float
    deadline_days: float
    exposure_day_cost: float
    bridge_value: str  # as typed; "" for none
    feature_key: str
    rollback_value: str
    current_value: str

    def policy(self) -> Policy:
        return Policy(
            guardrails=tuple(Guardrail(metric, tolerance) for metric, tolerance in self.guardrails),
            alpha=self.alpha,
            power=self.power,
            max_step_share=self.max_step_share,
            deadline_days=self.deadline_days,
            exposure_day_cost=self.exposure_day_cost,
            bridge_value=parse_value(self.bridge_value) if self.bridge_value.strip() else None,
        )


def parse_value(text: str) -> Any:
    """A flag value as typed: JSON when it parses (true, 3, {...}), else the plain string
    (as the CLI reads ``--rollback-value``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@st.cache_data(ttl=MEDIUM, max_entries=4)
def plan_inputs(
    experiment_id: str, run_id: int, metrics: tuple[str, ...]
) -> tuple[pd.DataFrame, datetime, float | None]:
    """The treated users of the run with their risk and recent activity (what
    ``create_plan`` reads), the data's end and the half-life; ``run_id`` keys the cache."""
    guardrails = tuple(Guardrail(metric, 1.0) for metric in metrics)  # tolerances unused here
    users, _, as_of, half_life = load_plan_users(engine(), experiment_id, guardrails)
    return users, as_of, half_life


@st.cache_data(ttl=MEDIUM, max_entries=16)
def what_if_plan(experiment_id: str, run_id: int, inputs: PolicyInputs) -> Plan:
    """The plan ``create_plan`` would store for these inputs, computed and stored nowhere."""
    users, as_of, half_life = plan_inputs(
        experiment_id, run_id, tuple(metric for metric, _ in inputs.guardrails)
    )
    return plan_rollback(
        users,
        experiment_id=experiment_id,
        feature_key=inputs.feature_key,
        policy=inputs.policy(),
        rollback_value=parse_value(inputs.rollback_value),
        current_value=parse_value(inputs.current_value),
        as_of=as_of,
        created_at=datetime.now(UTC),
        half_life_days=half_life,
    )


@st.cache_data(ttl=MEDIUM, max_entries=16)
def strategy_options(experiment_id: str, run_id: int, inputs: PolicyInputs) -> dict[str, str]:
    """Per strategy, the name of the option the planner would choose for it (its cheapest
    within the deadline: what "Save plan" stores when that strategy is picked)."""
    plan = what_if_plan(experiment_id, run_id, inputs)
    return {
        strategy: choose(plan, strategy).option
        for strategy in STRATEGIES
        if any(o.strategy == strategy for o in plan.options)
    }


@st.cache_data(ttl=MEDIUM, max_entries=16)
def what_if_json(
    experiment_id: str, run_id: int, inputs: PolicyInputs, strategy: str
) -> dict[str, Any]:
    """plan.json of the what-if plan with ``strategy`` chosen, as it would be stored (the
    planner page's download)."""
    plan = what_if_plan(experiment_id, run_id, inputs)
    if strategy != plan.strategy:
        plan = choose(plan, strategy)
    return plan_document(plan, environments=tuple(get_settings().environments()))


@st.cache_data(ttl=MEDIUM, max_entries=16)
def what_if_document(
    experiment_id: str, run_id: int, inputs: PolicyInputs, strategy: str
) -> PlanDocument:
    """The what-if plan with ``strategy`` chosen, read as a stored plan is read."""
    return PlanDocument.from_json(what_if_json(experiment_id, run_id, inputs, strategy))


def save_plan(
    experiment_id: str, inputs: PolicyInputs, strategy: str | None, *, record_only: bool = False
) -> int:
    """Store the plan through rollout.plans.create_plan, the code the CLI and the API use
    (``record_only``: a plan whose stages are recorded, GrowthBook never written); return
    its id."""
    plan_id, _, _ = create_plan(
        engine(),
        experiment_id=experiment_id,
        feature_key=inputs.feature_key,
        policy=inputs.policy(),
        rollback_value=parse_value(inputs.rollback_value),
        current_value=parse_value(inputs.current_value),
        strategy=strategy,
        environments=tuple(get_settings().environments()),
        actor="dashboard",
        mode=PlanMode.record_only if record_only else PlanMode.live,
    )
    experiment_plans.clear()
    feature_of.clear()
    return plan_id


def preview_fragment(value: Any, limit: int = MEMBERS_SHOWN) -> Any:
    """A GrowthBook payload or REST body with every saved group's member list cut to
    ``limit`` ids and a note of how many more there are."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "savedGroups" and isinstance(item, dict):
                out[key] = {name: _cut(members, limit) for name, members in item.items()}
            elif key == "values" and isinstance(item, list):
                out[key] = _cut(item, limit)
            else:
                out[key] = preview_fragment(item, limit)
        return out
    if isinstance(value, list):
        return [preview_fragment(item, limit) for item in value]
    return value


def _cut(members: Any, limit: int) -> Any:
    if not isinstance(members, list) or len(members) <= limit:
        return members
    return [*members[:limit], f"… {len(members) - limit:,} more"]


# --- weekly report --------------------------------------------------------------------------


def iso_weeks(span: tuple[datetime, datetime]) -> list[str]:
    """The ISO weeks (``2026-W44``) from the first to the last moment of ``span``, newest
    first."""
    first, last = span
    monday = (first - timedelta(days=first.weekday())).date()
    weeks = []
    while monday <= last.date():
        year, week, _ = monday.isocalendar()
        weeks.append(f"{year}-W{week:02d}")
        monday += timedelta(days=7)
    return weeks[::-1]


@st.cache_data(ttl=MEDIUM, max_entries=16, show_spinner="Building the report…")
def weekly_report(experiment_id: str, week: str) -> WeeklyReport:
    """rollout.report's weekly report (its analyses are stored and reused while the data is
    the same, so only a week's first report takes seconds)."""
    from rollout.report import build_weekly_report

    return build_weekly_report(engine(), experiment_id, week)


@st.cache_data(ttl=MEDIUM, max_entries=16)
def weekly_report_markdown(experiment_id: str, week: str) -> str:
    from rollout.report import render_markdown

    return render_markdown(weekly_report(experiment_id, week))


@st.cache_data(ttl=MEDIUM, max_entries=16)
def weekly_report_file(experiment_id: str, week: str, fmt: str) -> tuple[bytes, str]:
    """The report as a file (html, md or csv: a zip of CSV files) and its media type."""
    from rollout.report import report_bytes

    return report_bytes(weekly_report(experiment_id, week), fmt)
