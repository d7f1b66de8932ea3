"""Metrics in plain words, for the sentences people read (dashboard, weekly report)."""

from __future__ import annotations

# metric -> (what it is, unit); unit None means a share of interactions, whose differences
# read as percentage points; "" a number without a unit.
METRIC_WORDS: dict[str, tuple[str, str | None]] = {
    "response_length": ("answer length", "words"),
    "agreement_rate": ("answers opening by agreeing with the user", None),
    "refusal_rate": ("refusals", None),
    "latency_ms": ("latency", "ms"),
    "feedback_score": ("feedback score", ""),
    "complaint_rate": ("complaints", None),
    "retry_rate": ("retries", None),
    "prompt_length": ("prompt length", "words"),
    "hedge_rate": ("hedging", None),
    "pushback_rate": ("pushing back on the model", None),
    "constraint_rate": ("explicit instructions", None),
    "politeness_rate": ("politeness", None),
    "question_rate": ("questions", None),
    "code_block_rate": ("code blocks", None),
}
