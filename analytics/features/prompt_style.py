"""Style of the user per interaction, read from the prompt text, vectorised in Arrow.

Markers inside code do not count: a ``please`` in a pasted docstring, a ``?`` in a regex or a
``# maybe later`` comment is the code's, not the user's. Fenced code blocks (to the closing
fence, or the end of the prompt when unclosed) and inline code spans are replaced by a space
before the hedge, pushback, constraint, politeness and question patterns run. Only prompts
holding a backtick are rewritten (a memchr-fast pre-filter), so the cost follows the share of
prompts with code. ``prompt_length`` counts the words of the whole prompt, code included: it
measures how much the user sent.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analytics.features.behavior import TextArray, count_words, map_text_slices
from analytics.features.lexicons import (
    BACKTICK_PATTERN,
    CODE_BLOCK_PATTERN,
    CODE_PATTERN,
    CONSTRAINTS,
    HEDGES,
    POLITENESS,
    PUSHBACK,
    QUESTION_PATTERN,
)

STYLE_SCHEMA = pa.schema(
    [
        pa.field("prompt_length", pa.int32()),
        pa.field("hedge", pa.bool_()),
        pa.field("pushback", pa.bool_()),
        pa.field("constraint", pa.bool_()),
        pa.field("politeness", pa.bool_()),
        pa.field("question", pa.bool_()),
        pa.field("code_block", pa.bool_()),
    ]
)
# Column -> the single pattern that sets it, run on the prompt with its code removed.
_MARKERS: dict[str, str] = {
    "hedge": HEDGES.pattern,
    "pushback": PUSHBACK.pattern,
    "constraint": CONSTRAINTS.pattern,
    "politeness": POLITENESS.pattern,
    "question": QUESTION_PATTERN,
}


def compute_prompt_style_features(
    prompt: TextArray | Iterable[str | None], *, use_threads: bool = True
) -> pa.Table:
    """Per-interaction style of the user, one row per prompt, in input order.

    Parameters
    ----------
    prompt : pyarrow.Array or pyarrow.ChunkedArray of strings
        The users' messages (``string``, ``large_string``, ``string_view`` or dictionary of
        strings; a plain sequence of ``str | None`` is converted).
    use_threads : bool
        Spread slices of the input over all cores.

    Returns
    -------
    pyarrow.Table
        ``prompt_length`` (int32: words of the whole prompt, as ``str.split()``), and the
        indicators ``hedge``, ``pushback``, ``constraint``, ``politeness``, ``question`` (a
        ``?``), each judged outside code, and ``code_block`` (a fenced block opened by a line
        starting with three backticks). A null prompt gives nulls in every column.

    Notes
    -----
    One compiled pattern per feature; the code-removal pattern and the fence test run only
    on the prompts that contain a backtick.
    """
    return map_text_slices(_style_batch, prompt, STYLE_SCHEMA, use_threads=use_threads)


def _style_batch(text: pa.Array) -> pa.RecordBatch:
    has_backtick = pc.fill_null(pc.match_substring_regex(text, BACKTICK_PATTERN), False)
    with_code = np.flatnonzero(has_backtick.to_numpy(zero_copy_only=False))
    code_block = np.zeros(len(text), np.bool_)
    prose = text
    if with_code.size:
        snippets = text.take(pa.array(with_code))
        fenced = pc.match_substring_regex(snippets, CODE_BLOCK_PATTERN)
        code_block[with_code] = fenced.to_numpy(zero_copy_only=False)
        prose = pc.replace_with_mask(
            text, has_backtick, pc.replace_substring_regex(snippets, CODE_PATTERN, " ")
        )
    nulls = text.is_null().to_numpy(zero_copy_only=False) if text.null_count else None
    columns = [
        count_words(text),
        *(pc.match_substring_regex(prose, pattern) for pattern in _MARKERS.values()),
        pa.array(code_block, pa.bool_(), mask=nulls),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=STYLE_SCHEMA)
