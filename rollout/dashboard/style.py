"""Prompt style and adaptation: how treated users changed the way they write, how fast, who
adapted, and what that looks like in one user's prompts."""

from dataclasses import asdict

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from analytics.documents import LABELS
from analytics.features.metrics import BUCKETS
from rollout.dashboard import data, ui

LAST_DAY = 28.0  # where the open-ended "14+" bucket is drawn to

st.title("Prompt style and adaptation")
experiment, run = ui.analysed_experiment()
document = run.document
control = document.control
adaptation = document.adaptation
fit = adaptation.half_life

st.subheader("Style shift (difference in differences)")
st.markdown(
    "Per style metric: the variation's mean per-user change from before to after first "
    "exposure, minus control's (over users with at least two interactions on each side); "
    "95% CI; `q_value` is Benjamini-Hochberg adjusted across the table."
)
style = pd.DataFrame([asdict(row) for row in document.style_shift]).reindex(
    columns=["metric", "variation", "did", "ci_low", "ci_high", "p_value", "q_value", "significant"]
)
number = st.column_config.NumberColumn(format="%.4g")
st.dataframe(
    style,
    hide_index=True,
    column_config=dict.fromkeys(("did", "ci_low", "ci_high", "p_value", "q_value"), number),
)

st.subheader("Shift by days since exposure")
left, right = st.columns(2)
half_life = None if fit is None else fit.half_life_days
amplitude = None if fit is None else fit.amplitude
left.metric("Adaptation half-life", ui.format_days(adaptation.half_life_days), border=True)
right.metric(
    "Plateau (adaptation score units)",
    "n/a" if amplitude is None else f"{amplitude:.2f}",
    border=True,
)
by_days = pd.DataFrame([asdict(row) for row in document.style_shift_by_days])
if by_days.empty:
    st.info("The stored analysis has no shift by days since exposure.")
else:
    metrics = list(dict.fromkeys(by_days["metric"]))
    significant = list(style.loc[style["significant"].fillna(False), "metric"])
    metric = st.selectbox(
        "Style metric",
        metrics,
        index=metrics.index(significant[0]) if significant else 0,
        key="style_metric",
    )
    points = by_days[by_days["metric"] == metric].copy()
    points["start"] = points["bucket"].map(lambda b: BUCKETS[b][0])
    points["end"] = points["bucket"].map(lambda b: min(BUCKETS[b][1], LAST_DAY))
    points["day"] = (points["start"] + points["end"]) / 2
    points["variation"] = points["variation"].map(lambda v: ui.variation_name(document, v))
    x = alt.X("day:Q", title="days since first exposure", scale=alt.Scale(domain=[0, LAST_DAY]))
    shift = alt.Chart(points).encode(
        x=x,
        color=alt.Color("variation:N", title=None, legend=alt.Legend(orient="top")),
        tooltip=[
            "bucket:N",
            "variation:N",
            alt.Tooltip("did:Q", format=".4g", title="shift"),
            alt.Tooltip("ci_low:Q", format=".4g"),
            alt.Tooltip("ci_high:Q", format=".4g"),
            alt.Tooltip("n_variation:Q", title="users"),
        ],
    )
    # Both axes show zero at the same height; the curve's plateau lines up with the largest
    # bucket shift, so the two shapes can be compared (their units differ).
    low = min(0.0, float(points["ci_low"].min()))
    high = max(0.0, float(points["ci_high"].max()))
    left_axis = alt.Scale(domain=[low, high], nice=False)
    did = alt.Y("did:Q", title=f"{metric}: shift vs control", scale=left_axis)
    layer = (
        shift.mark_rule(strokeWidth=2).encode(y=alt.Y("ci_low:Q", scale=left_axis), y2="ci_high:Q")
        + shift.mark_rule(strokeWidth=1, opacity=0.5).encode(x="start:Q", x2="end:Q", y=did)
        + shift.mark_point(filled=True, size=80).encode(y=did)
    )
    largest = float(points["did"].max())
    if half_life is not None and amplitude is not None and largest > 0 and amplitude > 0:
        t = np.linspace(0.0, LAST_DAY, 113)
        curve = pd.DataFrame({"day": t, "fitted": amplitude * (1.0 - 2.0 ** (-t / half_life))})
        ratio = amplitude / largest
        fitted = (
            alt.Chart(curve)
            .mark_line(color="#7f7f7f", strokeDash=[5, 3])
            .encode(
                x=x,
                y=alt.Y(
                    "fitted:Q",
                    title="fitted adaptation (score units)",
                    scale=alt.Scale(domain=[low * ratio, high * ratio], nice=False),
                    axis=alt.Axis(orient="right", titleColor="#7f7f7f"),
                ),
                tooltip=[
                    alt.Tooltip("day:Q", format=".1f"),
                    alt.Tooltip("fitted:Q", format=".3f"),
                ],
            )
        )
        chart = alt.layer(layer, fitted).resolve_scale(y="independent")
    else:
        chart = layer
    st.altair_chart(chart.properties(height=340), width="stretch")
    st.caption(
        "Points: the metric's shift (variation minus control, 95% CI) per bucket of days since "
        "exposure, drawn across the bucket. Dashed line, right axis: the saturating curve "
        "A·(1 − 2^(−t/h)) fitted to the users' composite adaptation score, with plateau "
        "A and half-life h as stored; zero lines up on both axes and the plateau with the "
        "largest bucket shift."
    )

st.subheader("Adaptation scores: treated against control")
histogram = data.score_histogram(run.id, control)
if histogram.empty:
    st.info("No user could be scored (they need interactions before and after exposure).")
else:
    st.altair_chart(
        alt.Chart(histogram)
        .mark_bar(opacity=0.55, binSpacing=0)
        .encode(
            x=alt.X("bin_start:Q", bin="binned", title="adaptation score"),
            x2="bin_end:Q",
            y=alt.Y("share:Q", stack=None, title="share of the group's scored users"),
            color=alt.Color("group:N", title=None, scale=alt.Scale(range=["#1f77b4", "#ff7f0e"])),
            tooltip=["group:N", "users:Q", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=260),
        width="stretch",
    )
    st.caption(
        "Control users are scored the same way: they show the score's spread with no "
        "adaptation, and their share labelled adapted is the false-positive rate."
    )

st.subheader("Adaptation labels by variation")
by_variation = adaptation.labels_by_variation
labels = pd.DataFrame(
    [
        {"variation": ui.variation_name(document, v), "label": label, "users": count}
        for v, counts in by_variation.items()
        for label, count in counts.items()
    ]
)
if not labels.empty:
    order = list(LABELS)
    st.altair_chart(
        alt.Chart(labels)
        .mark_bar()
        .encode(
            y=alt.Y("variation:N", title=None),
            x=alt.X(
                "users:Q", stack="normalize", title="share of users", axis=alt.Axis(format="%")
            ),
            color=alt.Color(
                "label:N", sort=order, scale=alt.Scale(domain=order, scheme="tableau10")
            ),
            order=alt.Order("order:Q"),
            tooltip=["variation:N", "label:N", "users:Q"],
        )
        .transform_calculate(order=f"indexof({order!r}, datum.label)")
        .properties(height=40 + 40 * len(by_variation)),
        width="stretch",
    )
    table = labels.pivot(index="variation", columns="label", values="users")
    st.dataframe(table.reindex(columns=[c for c in order if c in table.columns]))

plans = data.experiment_plans(experiment)
outline = data.plan_outline(plans[0].id, plans[0].version) if plans else None
if outline is not None and outline.cohorts:
    st.markdown(
        f"**Rollback cohorts of plan {plans[0].id}**: treated users grouped by adaptation "
        "label and tenure, least adapted first; risk is the expected chance that rolling a "
        "user back disrupts them again."
    )
    cohorts = pd.DataFrame(
        [{"cohort": name, **asdict(figures)} for name, figures in outline.cohorts.items()]
    )
    rank = {"least_adapted": 0, "partial": 1, "adapted": 2}
    st.dataframe(
        cohorts.sort_values("cohort", key=lambda c: c.map(rank)),
        hide_index=True,
        column_config={
            "mean_risk": st.column_config.NumberColumn("mean risk", format="%.3f"),
            "daily_active": st.column_config.NumberColumn("daily active", format="percent"),
        },
    )

st.subheader("Before and after, for one user")
candidates = data.example_users(run.id, control)
if candidates.empty:
    st.info("No treated user has interactions on both sides of their first exposure.")
    st.stop()
hide = st.toggle("hide prompt text", value=False, key="hide_prompts")
labels_of = dict(zip(candidates["user_id"], candidates["adaptation_label"], strict=True))
user = str(
    st.selectbox(
        "User (treated, most adapted first)",
        list(labels_of),
        format_func=lambda u: f"{u} · {labels_of[u]}",
        key="example_user",
    )
)
chosen = candidates[candidates["user_id"] == user].iloc[0]
first_exposure = pd.Timestamp(chosen["first_exposure"])
examples = data.prompt_examples(user, first_exposure.to_pydatetime(), with_text=not hide)
st.caption(
    f"First exposure {first_exposure:%Y-%m-%d %H:%M} UTC; adaptation score "
    f"{float(chosen['adaptation_score']):.2f} ({labels_of[user]}). The last two prompts "
    "before first exposure and the last two after it"
    + (", text hidden." if hide else f", cut to {data.PROMPT_CHARS} characters.")
)
sides = dict(zip(("before", "after"), st.columns(2), strict=True))
for side, column in sides.items():
    column.markdown(f"**{side.capitalize()} first exposure**")
    rows = examples[examples["side"] == side]
    if rows.empty:
        column.caption("No interactions.")
    for example in rows.itertuples():
        flags = [f for f in ("hedge", "pushback", "constraint") if getattr(example, f)]
        box = column.container(border=True)
        box.caption(
            f"{example.timestamp:%Y-%m-%d %H:%M} UTC · day {example.days_since_exposure:+.1f} · "
            f"{example.prompt_length} words" + (f" · {', '.join(flags)}" if flags else "")
        )
        if not hide:
            box.text(example.prompt)
