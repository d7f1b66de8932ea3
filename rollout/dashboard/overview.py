"""Overview: what happened in an experiment, in the numbers of its latest stored analysis, and
where its rollback stands."""

from datetime import UTC, datetime, timedelta

import streamlit as st

from analytics.documents import UNSCORED_REASONS
from analytics.features.metrics import describe_p, metric_label
from rollout.dashboard import data, ui
from rollout.dashboard.times import when

st.title("Aftershock")
experiment, run = ui.analysed_experiment()
document = run.document

drift = document.behavior_drift
adaptation = document.adaptation
half_life = adaptation.half_life_days
fit = adaptation.half_life
srm = document.srm
significant = sorted({row.metric for row in drift if row.significant})
plans = data.experiment_plans(experiment)
plan = plans[0] if plans else None
outline = None if plan is None else data.plan_outline(plan.id, plan.version)

labels = adaptation.labels
scored = adaptation.scored_users
unscored_help = "; ".join(
    f"{n:,} {UNSCORED_REASONS.get(reason, reason)}"
    for reason, n in adaptation.unscored.items()
    if n
)
if unscored_help:
    unscored_help = f"Not scored: {unscored_help}."


def next_step() -> tuple[str, str, str]:
    """What to do now, in words, and the page that does it: (text, page, link label)."""
    if plan is None or outline is None:
        if significant:
            return (
                "The new model behaves differently and no rollback is planned: **plan the "
                "rollback**. The planner shows who to move first and what each choice costs.",
                "rollout/dashboard/planner.py",
                "Plan the rollback",
            )
        return (
            "No behaviour change was found. If the new model is still to be rolled back, "
            "the planner shows how.",
            "rollout/dashboard/planner.py",
            "Rollback planner",
        )
    stages = outline.stages
    ramp = "rollout/dashboard/ramp.py"
    if plan.status == "completed":
        return (f"Plan {plan.id} is complete: every user is back.", ramp, "Ramp status")
    if plan.status == "aborted":
        return (
            f"Plan {plan.id} was aborted: plan the rollback again if it is still needed.",
            "rollout/dashboard/planner.py",
            "Rollback planner",
        )
    if plan.current_stage < 0:
        return (
            f"Plan {plan.id} is made and no stage is applied yet: **apply stage 0** "
            f"({stages[0].cohort} to {stages[0].coverage:.0%}).",
            ramp,
            "Ramp status",
        )
    decision = data.latest_decision(data.plan_events(plan.id))
    if plan.status == "paused" or (decision and decision.get("action") == "pause"):
        return (
            f"Plan {plan.id} is **paused** at stage {plan.current_stage}: read what the "
            "guardrails saw before going on.",
            ramp,
            "Ramp status",
        )
    stage = stages[plan.current_stage]
    if plan.stage_applied_at is not None:
        hold = plan.stage_applied_at + timedelta(hours=stage.min_hold_hours)
        if hold > datetime.now(UTC):
            return (
                f"Stage {plan.current_stage} is holding: **wait until {when(hold)}**, then "
                f"evaluate the guardrails and advance to stage {plan.current_stage + 1}.",
                ramp,
                "Ramp status",
            )
    return (
        f"Stage {plan.current_stage}'s hold has passed: **evaluate the guardrails** and, if "
        f"they say advance, apply stage {plan.current_stage + 1} of {len(stages) - 1}.",
        ramp,
        "Ramp status",
    )


first, second = st.columns(3), st.columns(3)
first[0].metric(
    "Behaviour drift",
    "found" if significant else "none found",
    delta=f"{len(significant)} of {len({row.metric for row in drift})} metrics",
    delta_color="off",
    delta_arrow="off",
    help="Behaviour metrics whose difference from control is larger than chance would give "
    "(adjusted for the number of metrics): "
    + (", ".join(map(metric_label, significant)) or "none"),
    border=True,
)
first[1].metric(
    "Treated users adapted",
    ui.format_share(ui.adapted_share(labels)),
    delta=f"{labels.get('adapted', 0):,} of {scored:,} scored",
    delta_color="off",
    delta_arrow="off",
    help="Adapted users among the treated users who could be scored (adapted, partial or "
    "unadapted): by how their prompts changed from before first exposure to after it, or, "
    "without enough of a pre-period, from their first days on the feature to their later "
    "ones." + (f" {unscored_help}" if unscored_help else ""),
    border=True,
)
interval = (
    f"95% CI {fit.ci_low:.1f} to {fit.ci_high:.1f} days"
    if fit is not None and fit.ci_low is not None and fit.ci_high is not None
    else "no interval"
)
first[2].metric(
    "Adaptation half-life",
    ui.format_days(half_life),
    delta=interval if half_life is not None else "the curve did not fit",
    delta_color="off",
    delta_arrow="off",
    help="Days from first exposure until half of the adaptation has happened.",
    border=True,
)
second[0].metric(
    "Sample ratio",
    "ok" if srm.ok else "MISMATCH",
    delta=describe_p(srm.p_value),
    delta_color="off",
    delta_arrow="off",
    help="Chi-square test of the users per variation against the designed split; a "
    "mismatch is flagged at p < 0.001, as GrowthBook does.",
    border=True,
)
if plan is None or outline is None:
    second[1].metric(
        "Rollback progress",
        "no plan",
        delta="plan one on Rollback planner",
        delta_color="off",
        delta_arrow="off",
        border=True,
    )
else:
    second[1].metric(
        "Rollback progress",
        ui.progress(plan, len(outline.stages)),
        delta=f"{plan.status} · plan {plan.id}",
        delta_color="off",
        delta_arrow="off",
        help=f"Stages of plan {plan.id} ({outline.strategy}) applied so far.",
        border=True,
    )
second[2].metric(
    "Users analysed",
    f"{sum(document.users.values()):,}",
    delta=f"{document.multiple_exposures:,} multiple exposures excluded",
    delta_color="off",
    delta_arrow="off",
    border=True,
)

st.subheader("In short")
st.markdown(ui.plain_summary(document, plan, outline))

st.subheader("Next step")
what, page, label = next_step()
st.markdown(what)
st.page_link(page, label=label, icon=":material/arrow_forward:")
if adaptation.unscored_users and not scored:
    st.warning(
        f"None of the {adaptation.unscored_users:,} treated users could be scored for "
        "adaptation. Scoring needs at least 50 eligible control users per method (10 per "
        "cross-fitting fold) and a few interactions per user: "
        + (unscored_help or "see the adaptation section of the README.")
    )
if plan is None:
    st.info(ui.no_plan_hint(experiment))

users = ", ".join(
    f"{ui.variation_name(document, v)}: {n:,} users" for v, n in document.users.items()
)
st.caption(
    f"Analysis {run.id} of {when(document.analysed_at)}: {users}; "
    f"{document.multiple_exposures:,} users seen in more than one variation excluded."
)
st.page_link(
    "rollout/dashboard/drift.py",
    label="Behaviour drift: every metric",
    icon=":material/show_chart:",
)
st.page_link(
    "rollout/dashboard/style.py", label="Prompt style and adaptation", icon=":material/edit_note:"
)
st.page_link("rollout/dashboard/planner.py", label="Plan a rollback", icon=":material/alt_route:")
