"""Prompt style and adaptation: how treated users changed the way they write, how fast, who
adapted, and what that looks like in one user's prompts."""

from dataclasses import asdict

import altair as alt
import pandas as pd
import streamlit as st

from analytics.documents import LABELS, SCORED_LABELS
from analytics.features.metrics import BUCKETS, describe_p, metric_label
from rollout.dashboard import data, ui
from rollout.dashboard.times import when

LAST_DAY = 28.0  # where the open-ended "14+" bucket is drawn to

st.title("Prompt style and adaptation")
experiment, run = ui.analysed_experiment()
document = run.document
control = document.control
adaptation = document.adaptation
fit = adaptation.half_life

STYLE_NUMBERS = ("effect", "ci_low", "ci_high", "p_value", "q_value")
DID_NUMBERS = ("did", "did_ci_low", "did_ci_high", "did_p_value")
ESTIMATES = ("all users", "same users (DiD)")  # the by-days chart's two series
OFFSET = 0.3  # days: the two series side by side

st.subheader("Style shift")
st.markdown(
    "How the new model's users write after they first met it, against the control's users: "
    "every randomised user who wrote since, new users included. **Clear change** says "
    "whether the difference is larger than chance would give; **same users** is how the "
    "users who also wrote before changed, against control users over the same time."
)
readable = pd.DataFrame(
    [
        {
            "what": metric_label(row.metric),
            "variation": ui.variation_name(document, row.variation),
            "change": "-" if row.effect is None else ui.format_change(row.metric, row.effect),
            "clear change": "yes" if row.significant else "no",
            "evidence": describe_p(row.q_value),
            "same users": "-" if row.did is None else ui.format_change(row.metric, row.did),
            "users": f"{row.n_control:,} control, {row.n_variation:,} new model",
        }
        for row in document.style_shift
    ]
)
st.dataframe(readable, hide_index=True)
style = pd.DataFrame([asdict(row) for row in document.style_shift]).reindex(
    columns=[
        "metric",
        "variation",
        *STYLE_NUMBERS,
        "significant",
        "n_control",
        "n_variation",
        *DID_NUMBERS,
        "did_n_control",
        "did_n_variation",
    ]
)
with st.expander("How this is computed"):
    st.markdown(
        "Per style metric, `effect`: the variation's per-user mean after first exposure minus "
        "control's, over every randomised user with a prompt since (new users included; "
        "`n_control`, `n_variation`), adjusted by how each user wrote before where they did "
        "(CUPED, with an indicator for users without a pre-period); 95% CI; `q_value` is "
        "Benjamini-Hochberg adjusted across the table (what **evidence** shows). `did`: the "
        "difference in differences, how the same users' prompts changed from before to after "
        "first exposure beyond control's change (users with at least two interactions on each "
        "side: `did_n_control`, `did_n_variation`)."
    )
    number = st.column_config.NumberColumn(format="%.4g")
    st.dataframe(
        style,
        hide_index=True,
        column_config=dict.fromkeys((*STYLE_NUMBERS, *DID_NUMBERS), number),
    )

st.subheader("Shift by days since exposure")
left, right = st.columns(2)
half_life = None if fit is None else fit.half_life_days
left.metric(
    "Adaptation half-life",
    ui.format_days(adaptation.half_life_days),
    help="How long after first exposure users' style had moved half as far as it finally did.",
    border=True,
)
treated = adaptation.labels
scored = sum(int(treated.get(k, 0)) for k in SCORED_LABELS)
right.metric(
    "Treated users adapted",
    f"{int(treated.get('adapted', 0)):,} of {scored:,} scored",
    help="Users the analysis could score (enough interactions); the others are counted on "
    "the overview with the reason.",
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
        format_func=metric_label,
        key="style_metric",
    )
    rows = by_days[by_days["metric"] == metric]
    # One point per bucket and estimate: between arms (every user active in the bucket) and
    # the difference in differences (users who also wrote before), drawn side by side.
    points = pd.concat(
        [
            rows.assign(estimate=ESTIMATES[0], shift=rows["effect"]),
            rows.assign(
                estimate=ESTIMATES[1],
                shift=rows["did"],
                ci_low=rows["did_ci_low"],
                ci_high=rows["did_ci_high"],
                n_variation=rows["did_n_variation"],
            ),
        ],
        ignore_index=True,
    )
    points = points[points["shift"].notna()].copy()
    points["start"] = points["bucket"].map(lambda b: BUCKETS[b][0])
    points["end"] = points["bucket"].map(lambda b: min(BUCKETS[b][1], LAST_DAY))
    side = points["estimate"].map({ESTIMATES[0]: -OFFSET, ESTIMATES[1]: OFFSET})
    points["day"] = (points["start"] + points["end"]) / 2 + side
    points["variation"] = points["variation"].map(lambda v: ui.variation_name(document, v))
    x = alt.X("day:Q", title="days since first exposure", scale=alt.Scale(domain=[0, LAST_DAY]))
    shift = alt.Chart(points).encode(
        x=x,
        color=alt.Color("variation:N", title=None, legend=alt.Legend(orient="top")),
        tooltip=[
            "bucket:N",
            "variation:N",
            "estimate:N",
            alt.Tooltip("shift:Q", format=".4g"),
            alt.Tooltip("ci_low:Q", format=".4g"),
            alt.Tooltip("ci_high:Q", format=".4g"),
            alt.Tooltip("n_variation:Q", title="users"),
        ],
    )
    low = min(0.0, float(points["ci_low"].min()))  # zero always on the axis
    high = max(0.0, float(points["ci_high"].max()))
    left_axis = alt.Scale(domain=[low, high], nice=False)
    y = alt.Y("shift:Q", title=f"{metric_label(metric)}: shift vs control", scale=left_axis)
    shape = alt.Shape(
        "estimate:N",
        scale=alt.Scale(domain=list(ESTIMATES), range=["circle", "triangle-up"]),
        legend=alt.Legend(orient="top", title=None),
    )
    layer = shift.mark_rule(strokeWidth=2).encode(
        y=alt.Y("ci_low:Q", scale=left_axis), y2="ci_high:Q"
    ) + shift.mark_point(filled=True, size=80).encode(y=y, shape=shape)
    chart = layer
    st.altair_chart(chart.properties(height=340), width="stretch")
    st.caption(
        "The metric's shift (variation minus control, with its 95% interval) per bucket of "
        "days since a user's first exposure: circles compare every user active in the bucket, "
        "triangles the same users' change since before first exposure. A shift that grows "
        "with the days is adaptation under way."
        + (
            f" Across the style metrics, half of the eventual shift came within "
            f"{half_life:.1f} days (the adaptation half-life)."
            if half_life is not None
            else ""
        )
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

st.page_link(
    "rollout/dashboard/planner.py",
    label="Next: plan a rollback that moves the least adapted first",
    icon=":material/alt_route:",
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
score = chosen["adaptation_score"]
st.caption(
    f"First exposure {when(first_exposure)}; adaptation score "
    + ("not computed" if pd.isna(score) else f"{float(score):.2f}")
    + f" ({labels_of[user]}). The last two prompts before first exposure and the last two "
    "after it" + (", text hidden." if hide else f", cut to {data.PROMPT_CHARS} characters.")
)
if not hide and not bool(chosen["has_text"]):
    st.info(
        "This user's prompts were stored without their text (AFTERSHOCK_STORE_TEXT: by "
        "default only a fixed sample of users keeps it, and users with text are listed "
        "first). The measures below are from the full text, computed when it was ingested."
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
            f"{when(example.timestamp)} · day {example.days_since_exposure:+.1f} · "
            f"{example.prompt_length} words" + (f" · {', '.join(flags)}" if flags else "")
        )
        if not hide and isinstance(example.prompt, str):
            box.text(example.prompt)
