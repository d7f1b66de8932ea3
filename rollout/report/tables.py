"""The weekly report as tables (shared by every format) and as Markdown."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC

from analytics.features.metrics import BUCKETS, describe_p, metric_label, verdict
from rollout.documents import PlanOption
from rollout.report.model import CHART_STYLE_METRICS, PlanView, WeeklyReport
from rollout.report.rollback import (
    blind_guardrails,
    describe_visibility,
    exchange_rate_sentence,
    forced_sentence,
    format_detectable,
    format_regression,
    guardrail_columns,
    metric_words,
    mode_words,
    option_title,
    visibility_advice,
)

# --- tables ---------------------------------------------------------------------------------

PLAN_TABLES = ("rollback_options", "plan_stages")  # shown under "Rollback plan"
NO_PLAN = "No rollback plan existed by the end of the week."


def format_number(value: float | None, digits: int = 3, *, signed: bool = False) -> str:
    """A figure as every table shows it: fixed ``digits`` decimals (with a sign when
    ``signed``), ``-`` when there is none."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def format_interval(low: float | None, high: float | None) -> str:
    return f"[{format_number(low)}, {format_number(high)}]"


@dataclass(frozen=True)
class Table:
    """A table of the report as text cells, shared by the Markdown and HTML renderers."""

    key: str
    title: str
    note: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str  # said instead of the table when it has no rows
    marked: tuple[bool, ...] = ()  # rows to highlight (significant)


def summary_rows(report: WeeklyReport) -> tuple[tuple[str, str], ...]:
    """The summary table: what, when, how many, and whether the split is sound."""
    total = sum(line.total_users for line in report.new_users)
    fresh = sum(line.new_users for line in report.new_users)
    srm = (
        "-"
        if report.srm_ok is None
        else f"{'ok' if report.srm_ok else 'MISMATCH'} ({describe_p(report.srm_p_value)})"
    )
    half_life = (
        "not estimated"
        if report.half_life_days is None
        else f"{format_number(report.half_life_days, 1)} days"
    )
    first = "-" if report.first_exposure is None else report.first_exposure.date().isoformat()
    return (
        ("experiment", report.experiment_id),
        ("week", f"{report.week.label}: {report.week.span} (UTC)"),
        ("first exposure of the experiment", first),
        ("users by the end of the week", f"{total:,}"),
        ("new users this week", f"{fresh:,}"),
        ("multiple exposures (excluded)", f"{report.multiple_exposures:,}"),
        ("sample ratio", srm),
        ("adaptation half-life", half_life),
        *_plan_summary_rows(report.plan),
    )


def _plan_summary_rows(plan: PlanView | None) -> tuple[tuple[str, str], ...]:
    if plan is None:
        return (("rollback plan", "none by the end of the week"),)
    mode, meaning = mode_words(plan.mode)
    chosen = plan.chosen
    return (
        (
            "rollback plan",
            f"plan {plan.plan_id}, revision {plan.revision}"
            + ("" if chosen is None else f": {option_title(chosen)}"),
        ),
        ("rollback mode", f"{mode}: {meaning}" if meaning else mode),
        ("forced advances (by the end of the week)", f"{len(plan.forced):,}"),
    )


def format_whole(value: float) -> str:
    """A count of users or user-days: whole, with thousands separators."""
    return f"{value:,.0f}"


def format_hold(hours: float) -> str:
    """A hold in words: "36 hours" under two days, "7.0 days" from there."""
    return f"{hours:,.0f} hours" if hours < 48 else f"{hours / 24:.1f} days"


def shown_options(plan: PlanView) -> list[PlanOption]:
    """The options the report lists: those on the front, the recommended and the chosen
    one, by exposed user-days."""
    shown = [o for o in plan.options if o.pareto or o.recommended or o.name == plan.option]
    return sorted(shown, key=lambda o: (o.exposed_user_days, o.expected_second_disruptions))


def _option_marks(option: PlanOption, plan: PlanView) -> str:
    marks = []
    if option.recommended:
        marks.append("recommended")
    if option.name == plan.option:
        marks.append("chosen")
    if not option.fits_deadline:
        marks.append("misses the deadline")
    return ", ".join(marks) or "-"


def _options_table(plan: PlanView | None) -> Table:
    rows: tuple[tuple[str, ...], ...] = ()
    marked: tuple[bool, ...] = ()
    note = ""
    if plan is not None:
        shown = shown_options(plan)
        rows = tuple(
            (
                option_title(o),
                format_whole(o.expected_second_disruptions),
                format_whole(o.exposed_user_days),
                format_whole(o.combined_cost),
                f"{o.duration_days:.1f}",
                str(o.stages),
                _option_marks(o, plan),
            )
            for o in shown
        )
        marked = tuple(o.recommended for o in shown)
        rate = plan.exposure_day_cost
        cost = (
            f" The combined cost weighs them together: second disruptions + exposed "
            f"user-days / {rate:,.0f}."
            if rate
            else ""
        )
        note = (
            f"The planner costed {len(plan.options):,} ways to roll back. Listed: the ones no "
            "other way beats on both harms (users disrupted a second time when moved back, "
            "and active user-days left on the misbehaving model), with the recommended one "
            f"highlighted.{cost}"
        )
    return Table(
        "rollback_options",
        "Rollback options",
        note,
        (
            "option",
            "second disruptions",
            "exposed user-days",
            "combined cost",
            "days",
            "stages",
            "note",
        ),
        rows,
        NO_PLAN,
        marked,
    )


def _plan_stages_table(plan: PlanView | None) -> Table:
    stages = () if plan is None else plan.stages
    columns = guardrail_columns(stages)
    rows = tuple(
        (
            str(stage.index),
            f"day {stage.start_day:.1f}",
            stage.cohort.replace("_", " "),
            stage.kind,
            f"{stage.cumulative_coverage:.0%}",
            f"{stage.cumulative_users:,}",
            format_hold(stage.min_hold_hours),
            *(format_detectable(stage, m, tolerance_shown=t is not None) for m, t in columns),
            describe_visibility(stage),
        )
        for stage in stages
    )
    headers = tuple(
        metric_words(m) + ("" if t is None else f" (tolerated {format_regression(m, t)})")
        for m, t in columns
    )
    note = ""
    if plan is not None:
        advice = visibility_advice(stages)
        note = (
            f"Plan {plan.plan_id}'s stages: the day each starts (from the plan's start), the "
            "share of the cohort and the users off the new model once it is applied, how long "
            "it holds, and per guardrail the smallest regression its test can detect within "
            "the hold (pts: percentage points; no test: nobody is left to compare with, as "
            "in a step to 100%). A guardrail sees a second disruption only if that is no larger "
            "than the regression tolerated." + ("" if advice is None else f" {advice}")
        )
    return Table(
        "plan_stages",
        "Stages of the plan",
        note,
        (
            "stage",
            "starts",
            "cohort",
            "move",
            "share of cohort moved so far",
            "users moved so far",
            "hold",
            *headers,
            "guardrails can see it",
        ),
        rows,
        NO_PLAN,
        tuple(bool(blind_guardrails(stage)) for stage in stages),
    )


def plan_paragraph(report: WeeklyReport) -> str:
    """The plan standing at the end of the week in a few sentences (empty without one)."""
    plan = report.plan
    if plan is None:
        return ""
    mode, meaning = mode_words(plan.mode)
    chosen = plan.chosen
    sentences = [
        f"Plan {plan.plan_id} (revision {plan.revision}) runs {mode}"
        + (f": {meaning}." if meaning else ".")
    ]
    if chosen is not None:
        sentences.append(
            f"It follows {option_title(chosen)}"
            + (" (the recommended option)" if chosen.recommended else " (not the recommended one)")
            + f": about {format_whole(chosen.expected_second_disruptions)} users disrupted a "
            f"second time and {format_whole(chosen.exposed_user_days)} active user-days on the "
            f"misbehaving model, over {chosen.duration_days:.1f} days."
        )
    rate = exchange_rate_sentence(plan.exposure_day_cost)
    if rate:
        sentences.append(rate)
    for forced in plan.forced:
        when = forced.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        sentences.append(f"On {when} UTC, {forced_sentence(forced)}.")
    return " ".join(sentences)


def build_tables(report: WeeklyReport) -> tuple[Table, ...]:
    """The report's tables, in reading order, as text cells."""
    return (
        Table(
            "summary",
            "Summary",
            "",
            ("item", "value"),
            summary_rows(report),
            "",
        ),
        Table(
            "behavior_drift",
            "Behaviour drift",
            "How the new version's answers differ from control's: the difference of per-user "
            "means (variation minus control), its 95% interval, whether the change is good or "
            "bad for users, and the evidence (how unlikely a difference this large is by "
            "chance, adjusted for the number of metrics; smaller is stronger).",
            (
                "what",
                "variation",
                "control",
                "variation mean",
                "change",
                "95% interval",
                "for users",
                "evidence",
                "began",
            ),
            tuple(
                (
                    metric_label(d.metric),
                    d.variation,
                    format_number(d.control_mean),
                    format_number(d.variation_mean),
                    format_number(d.effect, signed=True),
                    format_interval(d.ci_low, d.ci_high),
                    verdict(d.metric, d.effect, d.significant),
                    describe_p(d.q_value),
                    d.drift_began or "-",
                )
                for d in report.behavior_drift
            ),
            "No users yet: nothing to compare.",
            tuple(d.significant for d in report.behavior_drift),
        ),
        Table(
            "style_shift",
            "Style shift",
            "How the variation's users write after first exposure compared with control's: "
            "every randomised user with a prompt since, new users included, adjusted by how "
            "they wrote before where they did (the change; evidence and clear change are its). "
            "Beside it "
            "the difference in differences (DiD): how the same users' prompts changed from "
            "before to after first exposure, beyond control users' change over the same time.",
            (
                "what",
                "variation",
                "change",
                "95% interval",
                "evidence",
                "clear change",
                "DiD",
                "DiD 95% interval",
            ),
            tuple(
                (
                    metric_label(s.metric),
                    s.variation,
                    format_number(s.effect, signed=True),
                    format_interval(s.ci_low, s.ci_high),
                    describe_p(s.q_value),
                    "yes" if s.significant else "no",
                    format_number(s.did, signed=True),
                    format_interval(s.did_ci_low, s.did_ci_high),
                )
                for s in report.style_shift
            ),
            "No users yet: nothing to compare.",
            tuple(s.significant for s in report.style_shift),
        ),
        Table(
            "style_shift_by_days",
            "Style shift by days since first exposure",
            "The charted style metrics per bucket of days since a user's first exposure: the "
            "variation against control over every user active in the bucket (between arms), "
            "and the difference in differences over users who also wrote before (DiD); a "
            "growing shift is adaptation under way.",
            ("what", "variation", "estimate", *BUCKETS),
            _days_rows(report),
            "No users yet: nothing to compare.",
        ),
        Table(
            "adaptation_labels",
            "Adaptation of treated users",
            "Treated users per adaptation label at the end of the week and of the week before.",
            ("label", "this week", "previous week", "change"),
            tuple(
                (line.label, f"{line.this_week:,}", f"{line.previous_week:,}", f"{line.change:+,}")
                for line in report.labels
            ),
            "",
        ),
        Table(
            "new_users",
            "New users this week",
            "Users first exposed during the week, and all users by its end, per variation "
            "(users seen in two variations are excluded).",
            ("variation", "new users", "users by the end of the week"),
            tuple(
                (line.variation, f"{line.new_users:,}", f"{line.total_users:,}")
                for line in report.new_users
            ),
            "Nobody had been exposed by the end of the week.",
        ),
        _options_table(report.plan),
        _plan_stages_table(report.plan),
        Table(
            "stages",
            "Rollback steps this week",
            "Stages applied and guardrail decisions recorded during the week (UTC), and who "
            "took them; a forced advance is a stage applied past the guardrails.",
            ("time", "plan", "action", "stage", "move", "outcome", "decision", "by", "note"),
            tuple(
                (
                    s.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
                    str(s.plan_id),
                    s.what,
                    "-" if s.stage is None else str(s.stage),
                    s.move or "-",
                    s.outcome,
                    s.decision or "-",
                    s.actor or "-",
                    s.note or "-",
                )
                for s in report.stages
            ),
            "No plan event was recorded this week.",
            tuple(s.forced for s in report.stages),
        ),
    )


def chart_metrics(report: WeeklyReport) -> list[str]:
    """The style metrics worth charting: the significant ones first, then by q-value."""
    ranked = sorted(
        report.style_shift,
        key=lambda s: (not s.significant, s.q_value if s.q_value is not None else 1.0, s.metric),
    )
    chosen: list[str] = []
    for line in ranked:
        if line.metric not in chosen and (line.effect is not None or line.did is not None):
            chosen.append(line.metric)
    return chosen[:CHART_STYLE_METRICS]


DAYS_ESTIMATES = ("between arms", "DiD")  # the rows of each metric and variation, in order


def _days_rows(report: WeeklyReport) -> tuple[tuple[str, ...], ...]:
    metrics = chart_metrics(report)
    cells: dict[tuple[str, str, str], dict[str, str]] = {}
    for line in report.style_by_days:
        if line.metric in metrics:
            for estimate, value in zip(DAYS_ESTIMATES, (line.effect, line.did), strict=True):
                key = (line.metric, line.variation, estimate)
                cells.setdefault(key, {})[line.bucket] = format_number(value, signed=True)
    ordered = sorted(cells, key=lambda k: (metrics.index(k[0]), k[1], DAYS_ESTIMATES.index(k[2])))
    return tuple(
        (metric_label(key[0]), *key[1:], *(cells[key].get(b, "-") for b in BUCKETS))
        for key in ordered
    )


# --- Markdown -------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    lines = [f"## {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    if not table.rows:
        return [*lines, table.empty, ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return [*lines, ""]


def render_markdown(report: WeeklyReport) -> str:
    """The report as Markdown: the headline, the recommendation, then every table."""
    lines = [
        f"# {report.title}",
        "",
        f"Week {report.week.label}: {report.week.span}, UTC. Figures are the analysis of the "
        "data as it stood at the end of the week.",
        "",
        "## Headline",
        "",
        report.headline,
        "",
        f"**Recommendation.** {report.recommendation}",
        "",
    ]
    for table in build_tables(report):
        if table.key in PLAN_TABLES:
            if table.key == PLAN_TABLES[0]:
                lines += ["## Rollback plan", "", plan_paragraph(report) or NO_PLAN, ""]
            if report.plan is None:
                continue
        lines += _md_table(table)
    if report.engineer_notes:
        lines += ["## For engineers", "", *(f"    {note}" for note in report.engineer_notes), ""]
    return "\n".join(lines).rstrip("\n") + "\n"
