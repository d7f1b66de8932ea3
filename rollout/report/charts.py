"""The weekly report's two charts (Altair), as inline SVG with nothing to fetch."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import altair as alt
import pandas as pd
import vl_convert

from analytics.documents import LABELS
from analytics.features.metrics import BUCKETS, metric_label
from rollout.documents import PlanOption
from rollout.report.model import ReportError, WeeklyReport
from rollout.report.rollback import option_title
from rollout.report.tables import DAYS_ESTIMATES, chart_metrics

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
    metrics = chart_metrics(report)
    rows = [
        {
            "metric": metric_label(line.metric),
            "variation": line.variation,
            "days": line.bucket,
            "estimate": estimate,
            "shift": value,
            "low": low,
            "high": high,
        }
        for line in report.style_by_days
        if line.metric in metrics
        for estimate, value, low, high in (
            (DAYS_ESTIMATES[0], line.effect, line.ci_low, line.ci_high),
            (DAYS_ESTIMATES[1], line.did, line.did_ci_low, line.did_ci_high),
        )
        if value is not None
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
        xOffset=alt.XOffset("estimate:N", scale=alt.Scale(domain=list(DAYS_ESTIMATES))),
        color=alt.Color("variation:N", legend=alt.Legend(orient="top") if several else None),
    )
    shape = alt.Shape(
        "estimate:N",
        scale=alt.Scale(domain=list(DAYS_ESTIMATES), range=["circle", "triangle-up"]),
        legend=alt.Legend(orient="top", title=None),
    )
    layers = alt.layer(
        alt.Chart().mark_rule(color="#999").encode(y=alt.datum(0)),
        base.mark_errorbar().encode(
            y=alt.Y("low:Q", title="shift vs control (metric units)"), y2=alt.Y2("high:Q")
        ),
        base.mark_point(filled=True, size=50).encode(y=alt.Y("shift:Q"), shape=shape),
        data=pd.DataFrame(rows),
    ).properties(width=130, height=150)
    chart: alt.TopLevelMixin = layers.facet(
        column=alt.Column("metric:N", sort=[metric_label(m) for m in metrics], title=None),
        title="Style shift by days since first exposure (95% CI)",
    ).resolve_scale(y="independent")
    return chart


# --- the rollback options (shared with the dashboard's planner page) -------------------------

OPTION_GROUPS = ("fits the deadline", "misses the deadline")
OPTION_COLOURS = ("#2f5d9e", "#c8ccd2")
RECOMMENDED_COLOUR = "#d1495b"
X_TITLE = "exposed user-days on the misbehaving model"
Y_TITLE = "expected second disruptions (users)"


def option_points(options: Sequence[PlanOption], chosen: str | None = None) -> pd.DataFrame:
    """One row per option the planner costed: its two harms, whether it is on the front,
    fits the deadline, is recommended or chosen (``chosen``: an option's name)."""
    columns = [
        "name",
        "label",
        "strategy",
        "second_disruptions",
        "exposed_user_days",
        "combined_cost",
        "days",
        "stages",
        "pareto",
        "fits_deadline",
        "group",
        "recommended",
        "chosen",
    ]
    rows = [
        {
            "name": o.name,
            "label": option_title(o),
            "strategy": o.strategy,
            "second_disruptions": o.expected_second_disruptions,
            "exposed_user_days": o.exposed_user_days,
            "combined_cost": o.combined_cost,
            "days": o.duration_days,
            "stages": o.stages,
            "pareto": o.pareto,
            "fits_deadline": o.fits_deadline,
            "group": OPTION_GROUPS[0] if o.fits_deadline else OPTION_GROUPS[1],
            "recommended": o.recommended,
            "chosen": o.name == chosen,
        }
        for o in options
    ]
    return pd.DataFrame(rows, columns=columns)


def options_chart(
    options: Sequence[PlanOption],
    *,
    chosen: str | None = None,
    exposure_day_cost: float | None = None,
    width: int | None = None,
    height: int = 260,
) -> alt.LayerChart | None:
    """The choice the planner made, as a chart: every option costed, at its exposed
    user-days (x) and expected second disruptions (y); the Pareto front (no option is lower
    on both) drawn as a line through its options; options that miss the deadline in grey;
    the recommended one as a red diamond with its label; the chosen one, when another,
    circled; with the policy's ``exposure_day_cost``, a dashed line of the options that
    would cost as much as the recommended one (its slope is the exchange rate). None without
    options."""
    points = option_points(options, chosen)
    if points.empty:
        return None
    tooltip = [
        alt.Tooltip("label:N", title="option"),
        alt.Tooltip("second_disruptions:Q", title="second disruptions", format=",.0f"),
        alt.Tooltip("exposed_user_days:Q", title="exposed user-days", format=",.0f"),
        alt.Tooltip("combined_cost:Q", title="combined cost", format=",.1f"),
        alt.Tooltip("days:Q", title="days", format=".1f"),
        alt.Tooltip("stages:Q", title="stages"),
        alt.Tooltip("group:N", title="deadline"),
    ]
    x = alt.X(
        "exposed_user_days:Q",
        title=X_TITLE,
        scale=alt.Scale(zero=True, nice=True),
        axis=alt.Axis(format=",.0f", tickCount=5, labelOverlap="greedy"),
    )
    # Options often differ by a few users out of hundreds: the y axis shows their range.
    y = alt.Y("second_disruptions:Q", title=Y_TITLE, scale=alt.Scale(zero=False, nice=True))
    front = points[points["pareto"]].sort_values(["exposed_user_days", "second_disruptions"])
    layers: list[alt.Chart] = []
    same_cost = _same_cost_line(points, exposure_day_cost)
    if same_cost is not None:
        layers.append(
            alt.Chart(same_cost)
            .mark_line(color=RECOMMENDED_COLOUR, strokeDash=[4, 4], strokeWidth=1, opacity=0.6)
            .encode(x=x, y=y, tooltip=[alt.Tooltip("what:N", title="dashed line")])
        )
    if len(front) > 1:
        layers.append(
            alt.Chart(front)
            .mark_line(color=OPTION_COLOURS[0], strokeWidth=1.5, opacity=0.7)
            .encode(x=x, y=y, order=alt.Order("exposed_user_days:Q"))
        )
    layers.append(
        alt.Chart(points)
        .mark_circle(size=55, opacity=0.85)
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "group:N",
                title=None,
                scale=alt.Scale(domain=list(OPTION_GROUPS), range=list(OPTION_COLOURS)),
                legend=alt.Legend(orient="top"),
            ),
            tooltip=tooltip,
        )
    )
    # The two labels are often close: the higher point's goes above it, the other's below.
    above = _recommended_above(points)
    marked = (
        ("recommended", "recommended", RECOMMENDED_COLOUR, "diamond", True, -12 if above else 14),
        ("chosen", "chosen", "#1f2328", "circle", False, 14 if above else -12),
    )
    for column, word, colour, shape, filled, dy in marked:
        mask = points[column] & ~points["recommended"] if column == "chosen" else points[column]
        rows = points[mask]
        if rows.empty:
            continue
        rows = rows.assign(tag=word)
        layers.append(
            alt.Chart(rows)
            .mark_point(
                shape=shape, filled=filled, size=260, color=colour, strokeWidth=2, opacity=1
            )
            .encode(x=x, y=y, tooltip=tooltip)
        )
        layers.append(
            alt.Chart(rows)
            .mark_text(align="left", dx=10, dy=dy, fontWeight="bold", color=colour)
            .encode(x=x, y=y, text="tag:N")
        )
    if width is None:
        return alt.LayerChart(layer=layers, height=height)
    return alt.LayerChart(layer=layers, height=height, width=width)


def _recommended_above(points: pd.DataFrame) -> bool:
    """Whether the recommended option sits no lower than the chosen one (or is alone)."""
    recommended = points.loc[points["recommended"], "second_disruptions"]
    chosen = points.loc[points["chosen"] & ~points["recommended"], "second_disruptions"]
    if recommended.empty or chosen.empty:
        return True
    return bool(recommended.iloc[0] >= chosen.iloc[0])


def _same_cost_line(points: pd.DataFrame, exposure_day_cost: float | None) -> pd.DataFrame | None:
    """The segment, inside the options' range, of the points whose combined cost equals the
    recommended option's: second disruptions + exposed user-days / exposure_day_cost."""
    recommended = points[points["recommended"]]
    if recommended.empty or not exposure_day_cost or exposure_day_cost <= 0:
        return None
    cost = float(recommended["combined_cost"].iloc[0])
    if cost <= 0:
        return None
    # Inside the options' range: no further right than the rightmost, no lower than the lowest.
    lowest = float(points["second_disruptions"].min())
    right = min(
        float(points["exposed_user_days"].max()) * 1.05,
        max(cost - lowest, 0.0) * exposure_day_cost,
    )
    if right <= 0:
        return None
    what = f"same combined cost as the recommended option ({cost:,.0f})"
    return pd.DataFrame(
        {
            "exposed_user_days": [0.0, right],
            "second_disruptions": [cost, cost - right / exposure_day_cost],
            "what": [what, what],
        }
    )


def _options_figure(report: WeeklyReport) -> alt.TopLevelMixin | None:
    plan = report.plan
    if plan is None:
        return None
    return options_chart(
        plan.options, chosen=plan.option, exposure_day_cost=plan.exposure_day_cost, width=460
    )


@dataclass(frozen=True)
class Figure:
    """A chart of the report, rendered as inline SVG."""

    key: str
    caption: str
    svg: str | None  # None when there is nothing to draw


def build_figures(report: WeeklyReport) -> tuple[Figure, ...]:
    """The report's charts: adaptation labels against the week before, the style shift by
    days since first exposure, and the rollback options the standing plan chose from."""
    charts: list[tuple[str, str, Callable[[WeeklyReport], alt.TopLevelMixin | None]]] = [
        (
            "adaptation_labels",
            f"Treated users per adaptation label, {report.week.label} against the week before.",
            _labels_chart,
        ),
        (
            "style_shift_by_days",
            "Style shift by days since first exposure: the most significant style metrics, "
            "between arms (circles: every user active in the bucket) and as the difference in "
            "differences (triangles: users who also wrote before first exposure).",
            _days_chart,
        ),
        (
            "rollback_options",
            "Every way to roll back the planner costed: users expected to be disrupted a second "
            "time when moved back (up) against active user-days left on the misbehaving model "
            "(right). The line joins the options no other beats on both; grey ones miss the "
            "deadline; the red diamond is the recommended one"
            + (
                ", and the dashed line the options that would cost as much as it."
                if report.plan is not None and report.plan.exposure_day_cost
                else "."
            ),
            _options_figure,
        ),
    ]
    figures = []
    for key, caption, build in charts:
        chart = build(report)
        figures.append(Figure(key, caption, None if chart is None else chart_svg(chart)))
    return tuple(figures)
