"""Overview: what happened in an experiment, in the numbers of its latest stored analysis, and
where its rollback stands."""

from datetime import datetime

import streamlit as st

from analytics.documents import UNSCORED_REASONS
from rollout.dashboard import data, ui

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
first, second = st.columns(3), st.columns(3)
first[0].metric(
    "Behaviour drift",
    "found" if significant else "none found",
    delta=f"{len(significant)} of {len({row.metric for row in drift})} metrics",
    delta_color="off",
    delta_arrow="off",
    help="Behaviour metrics whose difference from control is significant (BH q < 0.05): "
    + (", ".join(significant) or "none"),
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
    delta=f"p = {ui.format_p(srm.p_value)}",
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
analysed_at = datetime.fromisoformat(document.analysed_at)
st.caption(
    f"Analysis {run.id} of {analysed_at:%Y-%m-%d %H:%M} UTC: {users}; "
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
