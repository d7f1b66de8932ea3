"""Rollback planner: the options the planner costed under a policy (second disruptions against
exposed user-days, the recommendation and why), the chosen option's stages and what their
guardrails can see, what-ifs that store nothing, and "Save plan", which stores the plan
exactly as `aftershock plan` does."""

import json
from typing import Any

import streamlit as st

from analytics.errors import AftershockError
from rollout.dashboard import data, ui
from rollout.planner import Policy
from rollout.policy import POLICY_LIMITS, STRATEGIES
from rollout.report.charts import options_chart
from rollout.report.rollback import exchange_rate_sentence, option_title, visibility_advice


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
    "uniform_ramp": "Uniform ramp: everyone together, in steps",
    "adaptation_aware": "Adaptation-aware: least adapted first",
}

st.title("Rollback planner")
experiment, run = ui.analysed_experiment()
run_id = run.id
plans = data.experiment_plans(experiment)
latest = data.plan_outline(plans[0].id, plans[0].version) if plans else None
base = Policy()


st.markdown(
    "Change the policy and compute a what-if: nothing is stored until you press **Save plan**. "
    "Figures use the latest analysis "
    f"(run {run_id}) and the users' activity in the last 14 days of logs."
)
default_feature = data.feature_of(experiment) or ""
if latest is not None:  # the values of the experiment's last plan, else the pulled feature's
    known = (data.typed_text(latest.rollback_value), data.typed_text(latest.current_value))
else:
    known = data.pulled_flag_values(experiment, run_id, default_feature)
with st.form("policy"):
    flag = st.columns(4)
    feature_key = flag[0].text_input("Feature key", value=default_feature, key="feature_key")
    rollback_value = flag[1].text_input(
        "Rollback value (served again)",
        value=known[0],
        placeholder="the control's value",
        key="rollback_value",
    )
    current_value = flag[2].text_input(
        "Current value (served now)",
        value=known[1],
        placeholder="the treatment's value",
        key="current_value",
    )
    bridge_value = flag[3].text_input(
        "Bridge value (optional)",
        value="",
        placeholder="none",
        key="bridge_value",
        help="A value to move partly and fully adapted users to first, on their way back.",
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
    deadline_days = _policy_input(
        knobs[3], "deadline_days", "deadline (days)", base.deadline_days, step=1.0, digits=0
    )
    exposure_day_cost = _policy_input(
        knobs[4],
        "exposure_day_cost",
        "user-days / disruption",
        base.exposure_day_cost,
        step=5.0,
        digits=0,
    )
    st.form_submit_button("Compute what-if")

if not feature_key.strip():
    st.warning("Enter the GrowthBook feature key the experiment runs on.")
    st.stop()
if not rollback_value.strip() or not current_value.strip():
    st.warning(
        "Enter the value users are rolled back to (the control's) and the value served now "
        "(the treatment's), or pull the feature from GrowthBook (`aftershock growthbook pull`) "
        "so they can be read from its experiment rule. A plan never writes a guessed value."
    )
    st.stop()
inputs = data.PolicyInputs(
    guardrails=tolerances,
    alpha=base.alpha if alpha is None else alpha,
    power=base.power if power is None else power,
    max_step_share=base.max_step_share if max_step_share is None else max_step_share,
    deadline_days=base.deadline_days if deadline_days is None else float(deadline_days),
    exposure_day_cost=base.exposure_day_cost
    if exposure_day_cost is None
    else float(exposure_day_cost),
    bridge_value=bridge_value,
    feature_key=feature_key.strip(),
    rollback_value=rollback_value,
    current_value=current_value,
)
plan = data.what_if_plan(experiment, run_id, inputs)

st.subheader("The choice")
st.caption(
    "Every way to roll back the planner costed, on its two harms: users expected to be "
    "disrupted a second time when they are moved back (up), and active user-days left on the "
    "misbehaving model until they are (right). The line joins the options no other beats on "
    "both; grey ones miss the deadline; the red diamond is the recommended one, and the dashed "
    "line the options that would cost as much as it."
)
recommended = data.what_if_document(experiment, run_id, inputs, plan.strategy)
options = recommended.options
best = recommended.chosen
chart_area = st.container()  # drawn once the strategy to inspect is known (it is circled)
rate = exchange_rate_sentence(inputs.exposure_day_cost)
title = recommended.strategy if best is None else option_title(best)
st.success(f"**Recommended: {title}.** {recommended.reason}", icon=":material/recommend:")
st.markdown(
    f":material/balance: **Exchange rate:** {rate} Change it with *user-days / disruption* "
    "above to see how the recommendation moves."
)

by_strategy = data.strategy_options(experiment, run_id, inputs)
strategies = [s for s in STRATEGIES if s in by_strategy]
option_by_name = {o.name: o for o in options}
st.caption(
    "Per strategy, its cheapest option within the deadline: expected second disruptions, "
    "with its exposed user-days and how long it takes."
)
for column, name in zip(st.columns(len(strategies)), strategies, strict=True):
    option = option_by_name[by_strategy[name]]
    column.metric(
        name + (" (recommended)" if name == plan.strategy else ""),
        f"{option.expected_second_disruptions:,.0f}",
        delta=f"{option.exposed_user_days:,.0f} exposed user-days · "
        f"{option.duration_days:.1f} days",
        delta_color="off",
        delta_arrow="off",
        border=True,
        help=f"{TITLES[name]}: {option_title(option)}.",
    )

st.subheader("Stages")
strategy = str(
    st.radio(
        "Strategy to inspect and save",
        strategies,
        index=strategies.index(plan.strategy),
        format_func=lambda s: s + (" (recommended)" if s == plan.strategy else ""),
        horizontal=True,
        key="strategy",
        help="Saving a strategy stores its cheapest option within the deadline (circled on "
        "the chart when it is not the recommended one).",
    )
)
chosen = data.what_if_document(experiment, run_id, inputs, strategy)
picked = chosen.chosen
chart = options_chart(
    options,
    chosen=None if picked is None else picked.name,
    exposure_day_cost=inputs.exposure_day_cost,
    height=340,
)
if chart is not None:
    chart_area.altair_chart(chart, width="stretch")
if picked is not None:
    st.markdown(
        f"**{option_title(picked)}**: about {picked.expected_second_disruptions:,.0f} second "
        f"disruptions and {picked.exposed_user_days:,.0f} exposed user-days over "
        f"{picked.duration_days:.1f} days, in {picked.stages} stages."
    )
timeline = ui.stage_table(chosen.stages)
st.dataframe(
    timeline,
    hide_index=True,
    height=35 * (len(timeline) + 1) + 3,
    column_config=ui.STAGE_COLUMNS,
)
st.markdown(
    "**What each stage's guardrails can see**: the smallest regression its test can detect "
    "within the hold (pts: percentage points), against the regression tolerated."
)
sensitivity = ui.sensitivity_table(chosen.stages)
st.dataframe(
    sensitivity,
    hide_index=True,
    height=35 * (len(sensitivity) + 1) + 3,
    column_config=ui.sensitivity_column_config(chosen.stages),
)
advice = visibility_advice(chosen.stages)
if advice is None:
    st.caption("Every tested guardrail can see the regression tolerated.")
else:
    st.warning(advice, icon=":material/visibility_off:")
if picked is not None and picked.warnings:
    st.caption("The planner's notes on this option: " + " ".join(picked.warnings))
if picked is not None and picked.timing:
    st.markdown("**When each cohort moves** (days from the plan's start)")
    st.dataframe(ui.timing_table(picked), hide_index=True)

with st.expander("GrowthBook rules of each stage (JSON)"):
    index = st.selectbox(
        "Stage",
        list(range(len(chosen.stages))),
        format_func=lambda i: (
            f"{i}: {chosen.stages[i].kind} {chosen.stages[i].cohort} to "
            f"{chosen.stages[i].coverage:.0%}"
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
        f"Saved-group member lists are cut to {data.MEMBERS_SHOWN} ids here; plan.json has "
        "them all."
    )

record_only = st.toggle(
    "Record only",
    value=False,
    key="record_only",
    help="A record-only plan's stages are recorded here and never written to GrowthBook "
    "(as `aftershock plan --record-only`); a live plan writes each stage to GrowthBook.",
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
        saved = data.save_plan(
            experiment,
            inputs,
            None if strategy == plan.strategy else strategy,
            record_only=record_only,
        )
    except AftershockError as error:
        st.error(str(error))
    else:
        st.session_state["saved_plan"] = {
            "id": saved,
            "strategy": strategy,
            "experiment": experiment,
            "mode": "record-only" if record_only else "live",
        }
last_saved = st.session_state.get("saved_plan")
if last_saved and last_saved["experiment"] == experiment:
    st.success(
        f"Saved plan {last_saved['id']} ({last_saved['strategy']}, {last_saved['mode']}). "
        f"Apply its first stage with `aftershock growthbook apply --plan {last_saved['id']} "
        "--stage 0`, then follow it on **Ramp status**."
    )
