"""Per-interaction features: the model's behaviour (response side) and the user's style
(prompt side), computed vectorised over Arrow string arrays.

``METRICS`` (declared in :mod:`analytics.features.metrics`) maps every metric name of the
data contract to its spec; ``BEHAVIOR_METRICS`` and ``STYLE_METRICS`` list the names in
contract order.
``compute_interaction_features`` returns both sides at once under the column names of
``analytics.models.InteractionFeatures``, ready to store.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from analytics.features.behavior import (
    BEHAVIOR_SCHEMA,
    TextArray,
    compute_behavior_features,
    count_words,
)
from analytics.features.lexicons import LEXICONS, Lexicon
from analytics.features.metrics import (
    BEHAVIOR_METRICS,
    BUCKETS,
    DAY_BINS,
    METRICS,
    RATIO_METRICS,
    STYLE_METRICS,
    MetricSpec,
    metric_label,
)
from analytics.features.prompt_style import STYLE_SCHEMA, compute_prompt_style_features

# Computed column -> stored column, in the order of analytics.models.InteractionFeatures.
STORED_COLUMNS: dict[str, str] = {
    METRICS[metric].column: METRICS[metric].stored_column
    for metric in (
        "prompt_length",
        "response_length",
        "agreement_rate",
        "refusal_rate",
        *STYLE_METRICS[1:],
    )
}


def compute_interaction_features(
    prompt: TextArray | Iterable[str | None],
    response: TextArray | Iterable[str | None],
    *,
    use_threads: bool = True,
) -> pa.Table:
    """Both sides' features of each interaction, named as stored (``has_hedge``, ...).

    ``prompt`` and ``response`` are aligned row by row (a null response, allowed by the
    contract, gives null response features). Columns, in order: ``prompt_length``,
    ``response_length``, ``has_agreement``, ``has_refusal``, ``has_hedge``, ``has_pushback``,
    ``has_constraint``, ``has_politeness``, ``has_question``, ``has_code_block``.
    """
    style = compute_prompt_style_features(prompt, use_threads=use_threads)
    behavior = compute_behavior_features(response, use_threads=use_threads)
    if style.num_rows != behavior.num_rows:
        raise ValueError(
            f"prompt and response must be aligned: {style.num_rows} prompts, "
            f"{behavior.num_rows} responses"
        )
    both = {name: style.column(name) for name in style.column_names}
    both |= {name: behavior.column(name) for name in behavior.column_names}
    return pa.table({stored: both[column] for column, stored in STORED_COLUMNS.items()})


__all__ = [
    "BEHAVIOR_METRICS",
    "BEHAVIOR_SCHEMA",
    "BUCKETS",
    "DAY_BINS",
    "LEXICONS",
    "METRICS",
    "RATIO_METRICS",
    "STORED_COLUMNS",
    "STYLE_METRICS",
    "STYLE_SCHEMA",
    "Lexicon",
    "MetricSpec",
    "compute_behavior_features",
    "compute_interaction_features",
    "compute_prompt_style_features",
    "count_words",
    "metric_label",
]
