"""The weekly report's two charts (Altair), as inline SVG with nothing to fetch."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import altair as alt
import pandas as pd
import vl_convert

from analytics.documents import LABELS
from analytics.features.metrics import BUCKETS
from rollout.report.model import ReportError, WeeklyReport
from rollout.report.tables import chart_metrics

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
            "metric": line.metric,
            "variation": line.variation,
            "days": line.bucket,
            "did": line.did,
            "low": line.ci_low,
            "high": line.ci_high,
        }
        for line in report.style_by_days
        if line.metric in metrics and line.did is not None
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
        color=alt.Color("variation:N", legend=alt.Legend(orient="top") if several else None),
    )
    layers = alt.layer(
        alt.Chart().mark_rule(color="#999").encode(y=alt.datum(0)),
        base.mark_errorbar().encode(
            y=alt.Y("low:Q", title="DiD (metric units)"), y2=alt.Y2("high:Q")
        ),
        base.mark_point(filled=True, size=50).encode(y=alt.Y("did:Q")),
        data=pd.DataFrame(rows),
    ).properties(width=130, height=150)
    chart: alt.TopLevelMixin = layers.facet(
        column=alt.Column("metric:N", sort=metrics, title=None),
        title="Style shift by days since first exposure (95% CI)",
    ).resolve_scale(y="independent")
    return chart


@dataclass(frozen=True)
class Figure:
    """A chart of the report, rendered as inline SVG."""

    key: str
    caption: str
    svg: str | None  # None when there is nothing to draw


def build_figures(report: WeeklyReport) -> tuple[Figure, ...]:
    """The report's two charts: adaptation labels against the week before, and the style
    shift by days since first exposure."""
    charts: list[tuple[str, str, Callable[[WeeklyReport], alt.TopLevelMixin | None]]] = [
        (
            "adaptation_labels",
            f"Treated users per adaptation label, {report.week.label} against the week before.",
            _labels_chart,
        ),
        (
            "style_shift_by_days",
            "Style shift by days since first exposure: the most significant style metrics.",
            _days_chart,
        ),
    ]
    figures = []
    for key, caption, build in charts:
        chart = build(report)
        figures.append(Figure(key, caption, None if chart is None else chart_svg(chart)))
    return tuple(figures)
