"""What the pages share: the experiment picker, the empty states, number formats and the
plain-language sentences. Loading stays in data.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import pandas as pd
import streamlit as st

from analytics.documents import SCORED_LABELS, AnalysisDocument
from analytics.features.metrics import METRICS, describe_p, metric_label
from analytics.inference.results import DriftRow, StyleShiftRow
from analytics.store import StoredAnalysis
from rollout.dashboard import data
from rollout.documents import PlanDocument, PlanOption, PlanStage
from rollout.report.rollback import (
    describe_visibility,
    format_detectable,
    format_regression,
    guardrail_columns,
    metric_words,
)
from rollout.store import PlanState

INGEST_COMMANDS = (
    "`aftershock ingest exposures FILE` · `aftershock ingest interactions FILE` · "
    "`aftershock analyze --experiment ID`"
)


def stop_without_analysis() -> NoReturn:
    """Say how to get an analysis (naming the experiments whose exposures are stored), and
    stop the page."""
    exposed = data.exposed_experiments()
    lines = ["No analysis yet. Load data and analyse it:", "", INGEST_COMMANDS]
    if exposed:
        lines += [
            "",
            "Exposures are stored for "
            + ", ".join(f"`{e}`" for e in exposed)
            + ": analyse with "
            + " · ".join(f"`aftershock analyze --experiment {e}`" for e in exposed),
        ]
    st.info("\n".join(lines))
    st.stop()


def _remember_experiment() -> None:
    st.session_state["_experiment"] = st.session_state["experiment"]


def pick_experiment(experiments: list[str]) -> str:
    """The experiment picker (in the sidebar, remembered across pages)."""
    remembered = st.session_state.get("_experiment")
    st.session_state["experiment"] = remembered if remembered in experiments else experiments[0]
    chosen: str = st.sidebar.selectbox(
        "Experiment", experiments, key="experiment", on_change=_remember_experiment
    )
    st.session_state["_experiment"] = chosen
    st.sidebar.caption(f"Database: `{data.database_label()}`")
    return chosen


def analysed_experiment() -> tuple[str, StoredAnalysis]:
    """The picked experiment and its latest stored run (its ``document`` is analysis.json);
    stops with what to do when there is none."""
    experiments = data.analysed_experiments()
    if not experiments:
        stop_without_analysis()
    experiment = pick_experiment(experiments)
    run = data.latest_analysis(experiment)
    if run is None:  # deleted since the list was cached
        st.info(f"No analysis of `{experiment}`: `aftershock analyze --experiment {experiment}`")
        st.stop()
    return experiment, run


def no_plan_hint(experiment: str) -> str:
    feature = data.feature_of(experiment) or "FEATURE"
    return (
        f"No rollback plan for `{experiment}` yet. Make one on the **Rollback planner** page, "
        f"or: `aftershock plan --experiment {experiment} --feature {feature} "
        "--rollback-value OLD --current-value NEW` (the values can be left out once the feature "
        "is pulled: `aftershock growthbook pull`)"
    )


# --- numbers --------------------------------------------------------------------------------


def format_share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def format_days(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} days"


def adapted_share(labels: dict[str, int]) -> float | None:
    """Adapted treated users over the treated users that could be scored."""
    scored = sum(int(labels.get(k, 0)) for k in SCORED_LABELS)
    return None if scored == 0 else int(labels.get("adapted", 0)) / scored


def format_change(metric: str, value: float) -> str:
    """An absolute difference in the metric's own unit, e.g. ``+33.2 words``, ``+45.1 pts``."""
    spec = METRICS.get(metric)
    unit = "" if spec is None else spec.plain_unit
    if unit is None:
        return f"{value * 100:+.1f} percentage points"
    number = f"{value:+,.1f}" if abs(value) >= 1 else f"{value:+.2g}"
    return f"{number} {unit}".rstrip()


def variation_name(document: AnalysisDocument, variation: str) -> str:
    name = document.variation_names.get(variation)
    return f"variation {variation}" + (f" ({name})" if name else "")


def progress(plan: PlanState, stages: int) -> str:
    """``1 / 11 stages``: how many of a plan's stages are applied."""
    return f"{plan.current_stage + 1} / {stages} stages"


# --- the summary ----------------------------------------------------------------------------


def _listing(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _changes(
    rows: Sequence[DriftRow | StyleShiftRow], value: str, limit: int | None = None
) -> list[str]:
    """The significant rows' changes, most significant first (``value``: the figure to show;
    ``limit``: at most that many)."""
    changes = [(r, getattr(r, value)) for r in rows if r.significant]
    found = [(r, change) for r, change in changes if change is not None]
    found.sort(key=lambda pair: (pair[0].q_value or 1.0, -abs(pair[1])))
    return [
        f"{_words(r.metric)} ({format_change(r.metric, change)})" for r, change in found[:limit]
    ]  # found[:None] is every row


def _words(metric: str) -> str:
    return metric_label(metric)


def plain_summary(
    document: AnalysisDocument, plan: PlanState | None, outline: PlanDocument | None
) -> str:
    """One paragraph, in plain words, of what the analysis found and where the rollback is."""
    who = (
        _listing([variation_name(document, v) for v in document.treatments]) or "the new variation"
    )
    drift = _changes(document.behavior_drift, "effect")
    sentences = []
    if drift:
        sentences.append(
            f"Compared with control, {who} changed how the model behaves: {_listing(drift)}."
        )
    else:
        sentences.append(f"No change in the model's behaviour was found between {who} and control.")
    labels = document.adaptation.labels
    share = adapted_share(labels)
    # The style table's significance is the between-arms comparison of all randomised users.
    style = _changes(document.style_shift, "effect")
    if style:
        sentences.append(f"Users of {who} write differently from control's: {_listing(style)}.")
    if share is not None:
        scored = sum(int(labels.get(k, 0)) for k in SCORED_LABELS)
        sentence = (
            f"{labels['adapted']:,} of the {scored:,} treated users who could be scored "
            f"({format_share(share)}) adapted how they write"
        )
        unscored = document.adaptation.unscored_users
        if unscored:
            sentence += f" ({unscored:,} more could not be scored yet: the adapted card says why)"
        half_life = document.adaptation.half_life_days
        if half_life is not None:
            sentence += (
                f"; half of the adaptation happened within {format_days(half_life)} "
                "of a user's first exposure"
            )
        sentences.append(sentence + ".")
    srm = document.srm
    if srm.ok:
        sentences.append(
            f"The traffic split looks as designed (sample ratio {describe_p(srm.p_value)})."
        )
    else:
        sentences.append(
            f"The traffic split is off (sample ratio mismatch, {describe_p(srm.p_value)}): "
            "check the assignment before trusting these figures."
        )
    if plan is None or outline is None:
        sentences.append("No rollback is planned yet.")
    else:
        sentences.append(
            f"Rollback plan {plan.id} ({outline.strategy.replace('_', ' ')}) has "
            f"applied {plan.current_stage + 1} of {len(outline.stages)} stages "
            f"and is {plan.status}."
        )
    return " ".join(sentences)


# --- a plan's stages ------------------------------------------------------------------------


def stage_table(stages: Sequence[PlanStage]) -> pd.DataFrame:
    """A plan's stages as a product manager reads them: when each starts, which cohort it
    moves, how much of it is off the new model afterwards (share and users), how long it
    holds, and the second disruptions expected of it."""
    return pd.DataFrame(
        [
            {
                "stage": stage.index,
                "starts on day": stage.start_day,
                "cohort": stage.cohort,
                "move": stage.kind,
                "share moved so far": stage.cumulative_coverage,
                "users moved so far": stage.cumulative_users,
                "hold (h)": stage.min_hold_hours,
                "expected second disruptions": stage.expected_disrupted_users,
            }
            for stage in stages
        ],
        columns=[
            "stage",
            "starts on day",
            "cohort",
            "move",
            "share moved so far",
            "users moved so far",
            "hold (h)",
            "expected second disruptions",
        ],
    )


STAGE_COLUMNS: dict[str, Any] = {
    "starts on day": st.column_config.NumberColumn(format="day %.1f"),
    "share moved so far": st.column_config.NumberColumn(
        format="percent", help="Share of the cohort off the new model after the stage."
    ),
    "users moved so far": st.column_config.NumberColumn(
        format="%d", help="Users of the cohort off the new model after the stage."
    ),
    "hold (h)": st.column_config.NumberColumn(
        format="%.0f", help="How long the stage holds before the next may be applied."
    ),
    "expected second disruptions": st.column_config.NumberColumn(format="%.0f"),
}
"""How :func:`stage_table`'s columns are shown: whole users, days, shares in %."""


def sensitivity_table(stages: Sequence[PlanStage]) -> pd.DataFrame:
    """Per stage and guardrail, the smallest regression the stage's test can detect within
    its hold ("1.2 pts", "5.3 pts ✗" when it cannot see the tolerated one, "no test"), and
    whether the stage's guardrails can see the regressions tolerated."""
    columns = guardrail_columns(stages)
    headers = [_guardrail_header(metric, tolerated) for metric, tolerated in columns]
    return pd.DataFrame(
        [
            {
                "stage": stage.index,
                **{
                    header: format_detectable(
                        stage, metric, tolerance_shown=tolerated is not None, short=True
                    )
                    for header, (metric, tolerated) in zip(headers, columns, strict=True)
                },
                "sees it": describe_visibility(stage, short=True),
            }
            for stage in stages
        ],
        columns=["stage", *headers, "sees it"],
    )


def _guardrail_header(metric: str, tolerated: float | None) -> str:
    words = metric_words(metric)
    if tolerated is None:
        return words
    return f"{words} (≤ {format_regression(metric, tolerated)})"


def sensitivity_column_config(stages: Sequence[PlanStage]) -> dict[str, Any]:
    """Help on :func:`sensitivity_table`'s guardrail columns."""
    help_text = (
        "The smallest regression this stage's test can detect within its hold, with the "
        "policy's power (pts: percentage points); in brackets, the regression tolerated. "
        "✗: larger than that, so the guardrail cannot see it; 'no test': nobody is left to "
        "compare with."
    )
    config: dict[str, Any] = {
        _guardrail_header(metric, tolerated): st.column_config.TextColumn(help=help_text)
        for metric, tolerated in guardrail_columns(stages)
    }
    config["sees it"] = st.column_config.TextColumn(
        help="Whether every guardrail tested at this stage can see the regression tolerated."
    )
    return config


def timing_table(option: PlanOption) -> pd.DataFrame:
    """When an option moves each cohort off the current value: users, first and last day."""
    return pd.DataFrame(
        [
            {
                "cohort": cohort,
                "users": timing.users,
                "first move (day)": round(timing.first_day, 1),
                "last move (day)": round(timing.last_day, 1),
            }
            for cohort, timing in option.timing.items()
        ]
    )
