"""Rollback planner: the strategies compared under a policy, what-ifs that store nothing, and
"Save plan", which stores the plan exactly as `aftershock plan` does."""

import json
from typing import Any

import pandas as pd
import streamlit as st

from analytics.errors import AftershockError
from rollout.dashboard import data, ui
from rollout.planner import Policy
from rollout.policy import POLICY_LIMITS, STRATEGIES


def _policy_input(
    column: Any, name: str, label: str, value: float | None, *, step: float, digits: int = 2
) -> float | None:
    """A number input for a policy field, bounded as rollout.policy.POLICY_LIMITS says."""
    limit = POLICY_LIMITS[name]
    return column.number_input(  # type: ignore[no-any-return]
        label,
        min_value=limit.low,
        max_value=limit.high,
        value=value,
        step=step,
        format=f"%.{digits}f",
        placeholder="none",
        help=limit.help,
        key=name,
    )


TITLES = {
    "immediate": "Immediate: everyone back now",
    "uniform_ramp": "Uniform ramp: 1, 5, 10, 25, 50, 100%",
    "adaptation_aware": "Adaptation-aware: least adapted first",
}

st.title("Rollback planner")
experiment, run = ui.analysed_experiment()
run_id = run.id
plans = data.experiment_plans(experiment)
latest = data.plan_outline(plans[0].id) if plans else None
base = Policy()


def _typed(value: object, fallback: str) -> str:
    if value is None:
        return fallback
    return value if isinstance(value, str) else json.dumps(value)


st.markdown(
    "Change the policy and compute a what-if: nothing is stored until you press **Save plan**. "
    "Figures use the latest analysis "
    f"(run {run_id}) and the users' activity in the last 14 days of logs."
)
with st.form("policy"):
    flag = st.columns(3)
    feature_key = flag[0].text_input(
        "Feature key", value=data.feature_of(experiment) or "", key="feature_key"
    )
    rollback_value = flag[1].text_input(
        "Rollback value (served again)",
        value=_typed(None if latest is None else latest.rollback_value, "control"),
        key="rollback_value",
    )
    current_value = flag[2].text_input(
        "Current value (served now)",
        value=_typed(None if latest is None else latest.current_value, "treatment"),
        key="current_value",
    )
    st.markdown("**Guardrail tolerances**: the largest regression a stage may show")
    tolerance_columns = st.columns(len(base.guardrails))
    tolerances = tuple(
        (
            guardrail.metric,
            float(
                column.number_input(
                    guardrail.metric,
                    min_value=0.001,
                    max_value=10.0,
                    value=guardrail.max_regression,
                    step=0.005,
                    format="%.3f",
                    key=f"tolerance_{guardrail.metric}",
                )
            ),
        )
        for guardrail, column in zip(base.guardrails, tolerance_columns, strict=True)
    )
    knobs = st.columns(5)
    alpha = _policy_input(knobs[0], "alpha", "alpha", base.alpha, step=0.01, digits=3)
    power = _policy_input(knobs[1], "power", "power", base.power, step=0.05)
    max_step_share = _policy_input(
        knobs[2], "max_step_share", "max step share", base.max_step_share, step=0.05
    )
    deadline_days = _policy_input(knobs[3], "deadline_days", "deadline (days)", None, step=1.0)
    bridge_value = knobs[4].text_input(
        "bridge value", value="", placeholder="none", key="bridge_value"
    )
    st.form_submit_button("Compute what-if")

if not feature_key.strip():
    st.warning("Enter the GrowthBook feature key the experiment runs on.")
    st.stop()
inputs = data.PolicyInputs(
    guardrails=tolerances,
    alpha=base.alpha if alpha is None else alpha,
    power=base.power if power is None else power,
    max_step_share=base.max_step_share if max_step_share is None else max_step_share,
    deadline_days=None if deadline_days is None else float(deadline_days),
    bridge_value=bridge_value,
    feature_key=feature_key.strip(),
    rollback_value=rollback_value,
    current_value=current_value,
)
plan = data.what_if_plan(experiment, run_id, inputs)

st.subheader("Strategies compared")
st.caption("Expected disrupted users of each strategy, its stages and how long it takes.")
recommended = plan.strategy
options = {
    o.strategy: o for o in data.what_if_document(experiment, run_id, inputs, recommended).options
}
for column, strategy in zip(st.columns(len(STRATEGIES)), STRATEGIES, strict=True):
    option = options[strategy]
    stages_text = f"{option.stages} stage" + ("s" if option.stages != 1 else "")
    column.metric(
        strategy + (" (recommended)" if strategy == recommended else ""),
        f"{option.expected_disrupted_users:,.1f}",
        delta=f"{stages_text} · {option.duration_days:.1f} days",
        delta_color="off",
        delta_arrow="off",
        border=True,
        help=TITLES[strategy] + ". " + " ".join(option.warnings),
    )
st.success(f"**Recommended: {recommended}.** {plan.reason}", icon=":material/recommend:")

strategy = st.radio(
    "Strategy to inspect and save",
    STRATEGIES,
    index=STRATEGIES.index(recommended),
    format_func=lambda s: s + (" (recommended)" if s == recommended else ""),
    horizontal=True,
    key="strategy",
)
chosen = data.what_if_document(experiment, run_id, inputs, strategy)
for warning in options[strategy].warnings:
    st.warning(f"{strategy}: {warning}")

st.subheader("Stages")
columns = [
    "index",
    "cohort",
    "kind",
    "coverage",
    "users",
    "min_hold_hours",
    "power",
    "required_users",
    "expected_disrupted_users",
    "underpowered",
]
stages = pd.DataFrame([{c: getattr(s, c) for c in columns} for s in chosen.stages], columns=columns)
st.dataframe(
    stages,
    hide_index=True,
    height=35 * (len(stages) + 1) + 3,
    column_config={
        "coverage": st.column_config.NumberColumn(format="percent"),
        "power": st.column_config.NumberColumn(format="%.2f"),
        "min_hold_hours": st.column_config.NumberColumn("hold (h)", format="%.0f"),
    },
)

st.subheader("GrowthBook rules of a stage")
index = st.selectbox(
    "Stage",
    list(range(len(chosen.stages))),
    format_func=lambda i: (
        f"{i}: {chosen.stages[i].kind} {chosen.stages[i].cohort} to {chosen.stages[i].coverage:.0%}"
    ),
    key="preview_stage",
)
stage = chosen.stages[index]
sdk, rest = st.tabs(["SDK payload after the stage", "REST request bodies"])
with sdk:
    st.json(data.preview_fragment(stage.growthbook), expanded=True)
with rest:
    st.json(data.preview_fragment(stage.rest), expanded=True)
st.caption(
    f"Saved-group member lists are cut to {data.MEMBERS_SHOWN} ids here; plan.json has them all."
)

left, right = st.columns(2)
left.download_button(
    "Download plan.json",
    data=json.dumps(data.what_if_json(experiment, run_id, inputs, strategy), indent=1) + "\n",
    file_name=f"plan-{experiment}-{strategy}.json",
    mime="application/json",
    on_click="ignore",
)
if right.button("Save plan", type="primary"):
    try:
        saved = data.save_plan(experiment, inputs, None if strategy == recommended else strategy)
    except AftershockError as error:
        st.error(str(error))
    else:
        st.session_state["saved_plan"] = {
            "id": saved,
            "strategy": strategy,
            "experiment": experiment,
        }
last_saved = st.session_state.get("saved_plan")
if last_saved and last_saved["experiment"] == experiment:
    st.success(
        f"Saved plan {last_saved['id']} ({last_saved['strategy']}). Apply its first stage with "
        f"`aftershock growthbook apply --plan {last_saved['id']} --stage 0`, then follow it on "
        "**Ramp status**."
    )
