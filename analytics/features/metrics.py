"""Every metric of the data contract, declared once: where it comes from, how it is stored and
compared, and how a person reads it.

Every surface (analysis, guardrails, dashboard, report) reads these specs instead of keeping
its own lists. Importing this module loads no numerical library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from analytics.features.lexicons import OPENING_CHARS

Side = Literal["behavior", "style"]
Source = Literal["response", "prompt", "log"]


@dataclass(frozen=True)
class MetricSpec:
    """How one per-interaction column becomes a metric of the data contract.

    Every metric is the mean of its column over a user's (or a cohort's) interactions, with
    nulls left out: an indicator's mean is a rate, a length's mean is words per interaction.
    ``column`` names the column in the feature tables, ``stored_column`` the column of
    ``analytics.models.Interaction`` that holds it. ``source`` says where it comes from: the
    response or the prompt text (computed at ingest), or the interaction log itself (``log``:
    passed through as ingested).

    ``kind`` says how arms are compared: ``mean`` metrics by each user's mean (CUPED Welch),
    ``ratio`` metrics as the pooled share of interactions with the delta method over users.
    ``worse`` is the direction that is worse for users (None: neither is), ``label`` the
    metric in plain words for the sentences people read.
    """

    metric: str
    column: str
    stored_column: str
    side: Side
    source: Source
    unit: str  # "share" for a share of interactions
    description: str
    label: str
    kind: Literal["mean", "ratio"] = "mean"
    worse: Literal["higher", "lower"] | None = None
    aggregation: Literal["mean"] = "mean"

    @property
    def is_share(self) -> bool:
        """A share of interactions (its differences read as percentage points)."""
        return self.unit == "share"

    @property
    def plain_unit(self) -> str | None:
        """The unit after a number in a sentence: None for a share, "" for a bare score."""
        if self.is_share:
            return None
        return self.unit if self.unit in ("words", "ms") else ""


_OUTSIDE = "outside code"

_SPECS = (
    MetricSpec(
        "response_length",
        "response_length",
        "response_length",
        "behavior",
        "response",
        "words",
        "whitespace-separated words of the response (as str.split())",
        label="answer length",
    ),
    MetricSpec(
        "agreement_rate",
        "agreement",
        "has_agreement",
        "behavior",
        "response",
        "share",
        f"share of responses opening (first {OPENING_CHARS} characters) with a "
        "sycophantic or over-confirming phrase",
        label="answers opening by agreeing with the user",
        kind="ratio",
        worse="higher",
    ),
    MetricSpec(
        "refusal_rate",
        "refusal",
        "has_refusal",
        "behavior",
        "response",
        "share",
        "share of responses that start with a refusal",
        label="refusals",
        kind="ratio",
        worse="higher",
    ),
    MetricSpec(
        "latency_ms",
        "latency_ms",
        "latency_ms",
        "behavior",
        "log",
        "ms",
        "latency as logged",
        label="latency",
        worse="higher",
    ),
    MetricSpec(
        "feedback_score",
        "feedback",
        "feedback",
        "behavior",
        "log",
        "score in [-1, 1]",
        "mean of thumbs down (-1), none (0) and up (1)",
        label="feedback score",
        worse="lower",
    ),
    MetricSpec(
        "complaint_rate",
        "complaint",
        "complaint",
        "behavior",
        "log",
        "share",
        "share of replies the user reported or complained about",
        label="complaints",
        kind="ratio",
        worse="higher",
    ),
    MetricSpec(
        "retry_rate",
        "retry",
        "retry",
        "behavior",
        "log",
        "share",
        "share of replies regenerated",
        label="retries",
        kind="ratio",
        worse="higher",
    ),
    MetricSpec(
        "prompt_length",
        "prompt_length",
        "prompt_length",
        "style",
        "prompt",
        "words",
        "whitespace-separated words of the whole prompt, code included (as str.split())",
        label="prompt length",
    ),
    MetricSpec(
        "hedge_rate",
        "hedge",
        "has_hedge",
        "style",
        "prompt",
        "share",
        f"share of prompts with a hedge (lexicons.HEDGES) {_OUTSIDE}",
        label="hedging",
    ),
    MetricSpec(
        "pushback_rate",
        "pushback",
        "has_pushback",
        "style",
        "prompt",
        "share",
        f"share of prompts correcting or doubting the model (lexicons.PUSHBACK) {_OUTSIDE}",
        label="pushing back on the model",
        worse="higher",  # users correcting the model more: friction
    ),
    MetricSpec(
        "constraint_rate",
        "constraint",
        "has_constraint",
        "style",
        "prompt",
        "share",
        "share of prompts with an explicit instruction on the answer "
        f"(lexicons.CONSTRAINTS) {_OUTSIDE}",
        label="explicit instructions",
    ),
    MetricSpec(
        "politeness_rate",
        "politeness",
        "has_politeness",
        "style",
        "prompt",
        "share",
        f"share of prompts with a politeness strategy (lexicons.POLITENESS) {_OUTSIDE}",
        label="politeness",
    ),
    MetricSpec(
        "question_rate",
        "question",
        "has_question",
        "style",
        "prompt",
        "share",
        f"share of prompts with a question mark {_OUTSIDE}",
        label="questions",
    ),
    MetricSpec(
        "code_block_rate",
        "code_block",
        "has_code_block",
        "style",
        "prompt",
        "share",
        "share of prompts with a fenced code block (```)",
        label="code blocks",
    ),
)

METRICS: dict[str, MetricSpec] = {spec.metric: spec for spec in _SPECS}
BEHAVIOR_METRICS: tuple[str, ...] = tuple(s.metric for s in _SPECS if s.side == "behavior")
STYLE_METRICS: tuple[str, ...] = tuple(s.metric for s in _SPECS if s.side == "style")
RATIO_METRICS: frozenset[str] = frozenset(s.metric for s in _SPECS if s.kind == "ratio")

# Days since first exposure are grouped into bins starting on these days (a bin runs to the
# next start): fine early, where adaptation moves fast, coarse later. Bin -1 is the
# pre-period. The contract's buckets (0-2, 3-6, 7-13, 14+) are unions of bins.
DAY_BINS = (0, 1, 2, 3, 4, 5, 6, 7, 10, 14, 21)
BUCKETS = {"0-2": (0, 3), "3-6": (3, 7), "7-13": (7, 14), "14+": (14, 10_000)}


def bin_midpoints() -> dict[int, float]:
    """The middle of each bin of days since exposure (the last bin: a week after its start)."""
    ends = [*DAY_BINS[1:], DAY_BINS[-1] + 7]
    return {start: (start + end) / 2 for start, end in zip(DAY_BINS, ends, strict=True)}


def metric_label(metric: str) -> str:
    """The metric in plain words ("hedging"); an unknown name as it is."""
    spec = METRICS.get(metric)
    return metric if spec is None else spec.label


def describe_p(value: float | None) -> str:
    """A p- or q-value as a reader meets it: ``p < 0.001``, ``p = 0.032``, ``p = n/a``."""
    if value is None or value != value:  # None or NaN
        return "p = n/a"
    return (
        "p < 0.001" if value < 0.001 else f"p = {value:.2g}" if value < 0.01 else f"p = {value:.2f}"
    )


def verdict(metric: str, effect: float | None, significant: bool | None) -> str:
    """What a change means for users, from the metric's ``worse`` direction: ``worse for
    users``, ``better for users``, ``changed (neither good nor bad)``, or ``no clear
    change`` when the test did not find one."""
    if not significant or effect is None or effect == 0:
        return "no clear change"
    spec = METRICS.get(metric)
    if spec is None or spec.worse is None:
        return "changed (neither good nor bad)"
    worse = effect > 0 if spec.worse == "higher" else effect < 0
    return "worse for users" if worse else "better for users"
