"""Ramp status: where each rollback plan of the experiment stands (and whether it writes
GrowthBook or only records), what its guardrails last said, a fresh guardrail decision on
demand, the stages forced past the guardrails, the plan's versions, and the audit trail."""

from datetime import timedelta

import pandas as pd
import streamlit as st

from analytics.errors import AftershockError
from analytics.features.metrics import describe_p
from rollout.dashboard import data, ui
from rollout.dashboard.times import column, instant, when
from rollout.report.rollback import mode_words

PLANS_SHOWN = 20

st.title("Ramp status")
experiment, _ = ui.analysed_experiment()
plans = data.experiment_plans(experiment)
if not plans:
    st.info(ui.no_plan_hint(experiment))
    st.stop()


def evaluate(plan_id: int) -> None:
    """The button's callback: it runs before the page does, so every table on the page,
    the summary at the top included, shows the decision just recorded."""
    try:
        data.evaluate_guardrails(plan_id)
        st.session_state.pop("ramp_error", None)
    except AftershockError as error:
        st.session_state["ramp_error"] = str(error)


rows = []
for state in plans[:PLANS_SHOWN]:
    outline = data.plan_outline(state.id, state.version)
    decision = data.latest_decision(data.plan_events(state.id))
    rows.append(
        {
            "plan": state.id,
            "feature": state.feature_key,
            "strategy": state.strategy,
            "mode": mode_words(state.mode)[0],
            "revision": None if outline is None else outline.revision,
            "status": state.status,
            "progress": ui.progress(state, 0 if outline is None else len(outline.stages)),
            "current stage": "-" if state.current_stage < 0 else str(state.current_stage),
            "stage applied at": instant(state.stage_applied_at),
            "latest guardrail decision": "-" if decision is None else decision["action"],
            "decided at": instant(None if decision is None else decision["at"]),
            "created at": state.created_at,
        }
    )
st.dataframe(
    pd.DataFrame(rows),
    hide_index=True,
    column_config={
        "stage applied at": column("stage applied at"),
        "decided at": column("decided at"),
        "created at": column("created at"),
    },
)

by_id = {state.id: state for state in plans[:PLANS_SHOWN]}
plan_id: int = st.selectbox(
    "Plan",
    list(by_id),
    format_func=lambda i: f"plan {i} ({by_id[i].strategy}, {mode_words(by_id[i].mode)[0]})",
    key="ramp_plan",
)
plan = by_id[plan_id]
outline = data.plan_outline(plan_id, plan.version)
if outline is None:
    st.stop()
stages = outline.stages
current = plan.current_stage
mode, meaning = mode_words(plan.mode)

# The mode says whether applying a stage changes what users get: shown before anything else.
if plan.mode == "record_only":
    st.warning(
        f"**Mode: {mode}.** Plan {plan_id} never writes GrowthBook: its stages are recorded "
        "here and judged by the guardrails, but users get whatever GrowthBook serves. (Chosen "
        "when the plan was made: `aftershock plan --record-only`.)",
        icon=":material/edit_note:",
    )
else:
    st.info(
        f"**Mode: {mode}.** Plan {plan_id}: {meaning} when it is applied.",
        icon=":material/cloud_sync:",
    )

cards = st.columns(3)
cards[0].metric(
    "Status",
    plan.status,
    delta=f"plan {plan.id} · version {plan.version} · revision {outline.revision}",
    delta_color="off",
    delta_arrow="off",
    border=True,
)
if current >= 0:
    stage = stages[current]
    cards[1].metric(
        "Current stage",
        f"{current} of 0–{len(stages) - 1}",
        delta=f"{stage.kind}: {stage.cohort} to {stage.coverage:.0%}",
        delta_color="off",
        delta_arrow="off",
        help="The last stage applied (stages count from 0) and what it moved.",
        border=True,
    )
    if plan.stage_applied_at is not None:
        hold = plan.stage_applied_at + timedelta(hours=stage.min_hold_hours)
        cards[2].metric(
            "Hold until",
            when(hold),
            delta=f"{ui.progress(plan, len(stages))} applied",
            delta_color="off",
            delta_arrow="off",
            border=True,
        )
else:
    st.info(
        f"No stage of plan {plan_id} is applied yet: "
        f"`aftershock growthbook apply --plan {plan_id} --stage 0` "
        "(add `--record-only` to record it without writing to GrowthBook)."
    )

st.subheader("Guardrails")
st.button(
    "Evaluate the guardrails now",
    disabled=current < 0,
    help="Judge the current stage from the logs since it was applied, and record the "
    "decision (as `aftershock guardrails --plan ID` does).",
    on_click=evaluate,
    args=(plan_id,),
)
if "ramp_error" in st.session_state:
    st.error(st.session_state.pop("ramp_error"))
events = data.plan_events(plan_id)
decision = data.latest_decision(events)
if decision is None:
    st.caption("No guardrail decision recorded yet.")
else:
    say = {"advance": st.success, "hold": st.info, "pause": st.error}.get(
        str(decision["action"]), st.info
    )
    say(
        f"**{str(decision['action']).upper()}** for stage {decision['stage']} "
        f"(decided {when(decision['at'])}). " + " ".join(decision.get("reasons", []))
    )
    active = decision.get("active_users", {})
    st.caption(
        f"Active users since the stage: {active.get('rolled_back', 0):,} rolled back, "
        f"{active.get('not_rolled_back', 0):,} not yet; split check "
        f"{describe_p((decision.get('srm') or {}).get('p_value'))}."
    )
    checks = pd.DataFrame(decision.get("checks", []))
    if not checks.empty:
        st.dataframe(
            checks.reindex(
                columns=[
                    "metric",
                    "status",
                    "harm",
                    "ci_low",
                    "ci_high",
                    "max_regression",
                    "rolled_back_mean",
                    "not_rolled_back_mean",
                    "rolled_back_users",
                    "not_rolled_back_users",
                    "error",
                ]
            ),
            hide_index=True,
        )

st.subheader("Forced advances")
forced = data.forced_advances(plan_id)
if not forced:
    st.caption(f"No stage of plan {plan_id} was forced past the guardrails.")
for advance in forced:
    said = (
        f" (the guardrails said **{advance.guardrails_action}**)"
        if advance.guardrails_action
        else ""
    )
    st.error(
        f"**Stage {advance.stage} was forced** past the guardrails{said} by "
        f"**{advance.actor}** on {when(advance.at)}. "
        f"Reason: {advance.reason or 'none recorded'}",
        icon=":material/fast_forward:",
    )

st.subheader("Versions")
versions = data.plan_versions(plan_id)
st.caption(
    f"Plan {plan_id} is at revision {outline.revision}. Revision 1 is the plan as made; a "
    "replan (from what the guardrails observed) adds one."
)
st.dataframe(
    pd.DataFrame(
        [
            {
                "revision": version["revision"],
                "time": version["at"],
                "by": version["actor"],
                "what": version["what"],
            }
            for version in reversed(versions)
        ]
    ),
    hide_index=True,
    column_config={"time": column("time"), "what": st.column_config.TextColumn(width="large")},
)

st.subheader("Audit trail")
trail = pd.DataFrame(
    [
        {
            "time": event["at"],
            "action": event["action"],
            "stage": event["stage"],
            "actor": event["actor"],
            "outcome": event["outcome"],
            "details": data.summarise_event(event),
        }
        for event in reversed(events)
    ]
)
picked = st.dataframe(
    trail,
    hide_index=True,
    column_config={"time": column("time"), "details": st.column_config.TextColumn(width="large")},
    on_select="rerun",
    selection_mode="single-row",
    key="ramp_audit",
)
rows_picked = picked.selection.rows if picked is not None else []
if rows_picked:
    event = trail.iloc[rows_picked[0]]
    st.markdown(
        f"**{event['action']}** ({event['outcome']}) by {event['actor']}, {when(event['time'])}"
    )
    st.write(event["details"])
else:
    st.caption("Select an event to read its details in full.")
