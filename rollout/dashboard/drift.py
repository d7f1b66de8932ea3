"""Behaviour drift: how the model's answers differ between variations, metric by metric, and
when the difference began."""

from dataclasses import asdict

import altair as alt
import pandas as pd
import streamlit as st

from analytics.analysis.params import AnalysisParams
from analytics.features.metrics import METRICS, describe_p, metric_label, verdict
from rollout.dashboard import data, ui
from rollout.dashboard.times import column, instant

st.title("Behaviour drift")
experiment, run = ui.analysed_experiment()
document = run.document

COLUMNS = [
    "metric",
    "variation",
    "control_mean",
    "variation_mean",
    "effect",
    "ci_low",
    "ci_high",
    "p_value",
    "q_value",
    "significant",
    "drift_began",
]
drift = pd.DataFrame([asdict(row) for row in document.behavior_drift]).reindex(columns=COLUMNS)


def _in_unit(metric: str, value: float | None) -> str:
    """A level in the metric's unit: ``120 words``, ``12.5%``."""
    spec = METRICS.get(metric)
    if value is None or pd.isna(value):
        return "-"
    if spec is not None and spec.is_share:
        return f"{value:.1%}"
    unit = "" if spec is None else spec.plain_unit or ""
    return f"{value:,.1f} {unit}".rstrip()


readable = pd.DataFrame(
    [
        {
            "what": metric_label(row.metric),
            "variation": ui.variation_name(document, row.variation),
            "control": _in_unit(row.metric, row.control_mean),
            "new model": _in_unit(row.metric, row.variation_mean),
            "change": "-" if row.effect is None else ui.format_change(row.metric, row.effect),
            "for users": verdict(row.metric, row.effect, row.significant),
            "evidence": describe_p(row.q_value),
            "began": instant(row.drift_began),
        }
        for row in document.behavior_drift
    ]
)
st.markdown(
    "How the new model's answers differ from the control's, for the users who saw each. "
    "**For users** says whether the change is good or bad for them; **evidence** is how "
    "unlikely a difference this large would be by chance (smaller is stronger)."
)
st.dataframe(
    readable,
    hide_index=True,
    column_config={
        "began": column("began"),
        "for users": st.column_config.TextColumn(width="medium"),
    },
)
with st.expander("How this is computed"):
    st.markdown(
        "Post-exposure difference of per-user means, variation minus control, CUPED-adjusted "
        "by each user's own pre-exposure mean (rates: the pooled share, delta method); 95% "
        "confidence interval; `q_value` is the p-value adjusted by Benjamini-Hochberg across "
        "the table (what **evidence** shows); `drift_began` is the start of the last shift "
        "detected in the daily variation-minus-control series."
    )
    number = st.column_config.NumberColumn(format="%.4g")
    st.dataframe(
        drift,
        hide_index=True,
        column_config=dict.fromkeys(
            ("control_mean", "variation_mean", "effect", "ci_low", "ci_high", "p_value", "q_value"),
            number,
        ),
    )

st.subheader("Daily series")
metrics = list(dict.fromkeys(drift["metric"]))
ranked = drift.sort_values("q_value", na_position="last")
default = metrics.index(ranked["metric"].iloc[0]) if len(ranked) else 0
metric = st.selectbox(
    "Metric", metrics, index=default, format_func=metric_label, key="drift_metric"
)
pre_days = AnalysisParams.from_json(run.parameters).periods.pre_days
daily = data.daily_series(experiment, pre_days, run.until)
if daily.empty:
    st.info(f"No interactions of `{experiment}`'s users are stored to draw a daily series.")
    st.stop()

series = daily[["variation", "date", "n", metric]].dropna(subset=[metric]).copy()
series["date"] = series["date"].dt.strftime("%Y-%m-%d")
series["variation"] = series["variation"].map(lambda v: ui.variation_name(document, v))
began = drift.loc[(drift["metric"] == metric) & drift["drift_began"].notna()].copy()
began["label"] = "drift began (" + began["variation"].map(str) + ")"
x = alt.X("date:T", timeUnit="utcyearmonthdate", title="day (UTC)")
lines = (
    alt.Chart(series)
    .mark_line(point=alt.OverlayMarkDef(size=16))
    .encode(
        x=x,
        y=alt.Y(f"{metric}:Q", title=metric_label(metric)),
        color=alt.Color(
            "variation:N",
            title=None,
            legend=alt.Legend(orient="top"),
            scale=alt.Scale(scheme="tableau10"),
        ),
        tooltip=[
            alt.Tooltip("date:T", timeUnit="utcyearmonthdate", title="day"),
            "variation:N",
            alt.Tooltip(f"{metric}:Q", format=".4g"),
            alt.Tooltip("n:Q", title="interactions"),
        ],
    )
)
chart = lines
if not began.empty:
    rules = (
        alt.Chart(began[["drift_began", "label"]])
        .mark_rule(strokeDash=[6, 4], color="#d62728", strokeWidth=2)
        .encode(
            x=alt.X("drift_began:T", timeUnit="utcyearmonthdate"),
            tooltip=[alt.Tooltip("label:N", title="change point"), "drift_began:N"],
        )
    )
    labels = rules.mark_text(align="left", dx=4, dy=-6, color="#d62728").encode(
        text="label:N", y=alt.value(8)
    )
    chart = lines + rules + labels
st.altair_chart(chart.properties(height=360), width="stretch")
st.caption(
    "Daily mean per variation of the users analysed (each user's interactions from "
    f"{pre_days:g} days before first exposure); the dashed line marks when the difference "
    "began."
    if pre_days is not None
    else "Daily mean per variation; the dashed line marks when the difference began."
)

st.subheader("Next step")
st.markdown(
    "Changes worse for users are the case for a rollback; the style page shows whether users "
    "have adapted to them, and the planner weighs both."
)
st.page_link("rollout/dashboard/style.py", label="Who adapted", icon=":material/edit_note:")
st.page_link("rollout/dashboard/planner.py", label="Plan the rollback", icon=":material/alt_route:")
