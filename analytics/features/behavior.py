"""Behaviour of the model per interaction, read from the response text, vectorised in Arrow.

Also home of the text kernels both feature modules share: splitting an array into slices
that run on all cores (``pyarrow.compute`` and the numpy kernels release the GIL), and the
word count.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from analytics.features.lexicons import AGREEMENT, OPENING_CHARS, REFUSALS

TextArray: TypeAlias = "pa.Array | pa.ChunkedArray"
U8Array = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]
I64Array = npt.NDArray[np.int64]

# Rows per unit of parallel work: enough to amortise the per-call setup of the kernels (regex
# compilation, DFA warm-up), small enough to give every core several units.
SLICE_ROWS = 65_536
# Bytes per word-count block: its scratch arrays stay in cache, which is most of the speed.
_BLOCK_BYTES = 1 << 20


BEHAVIOR_SCHEMA = pa.schema(
    [
        pa.field("response_length", pa.int32()),
        pa.field("agreement", pa.bool_()),
        pa.field("refusal", pa.bool_()),
    ]
)


def compute_behavior_features(
    response: TextArray | Iterable[str | None], *, use_threads: bool = True
) -> pa.Table:
    """Per-interaction behaviour of the model, one row per response, in input order.

    Parameters
    ----------
    response : pyarrow.Array or pyarrow.ChunkedArray of strings
        The model's replies (``string``, ``large_string``, ``string_view`` or dictionary of
        strings; a plain sequence of ``str | None`` is converted).
    use_threads : bool
        Spread slices of the input over all cores.

    Returns
    -------
    pyarrow.Table
        ``response_length`` (int32: runs of non-whitespace, the words of ``str.split()``),
        ``agreement`` (bool: a sycophantic opener among the first ``OPENING_CHARS``
        characters, ``lexicons.AGREEMENT``), ``refusal`` (bool: the response starts with a
        refusal, ``lexicons.REFUSALS``). A null response gives nulls in every column.

    Notes
    -----
    Three passes over the text: the word count (numpy over the UTF-8 bytes), then both
    regular expressions over the opening characters only.
    """
    return map_text_slices(_behavior_batch, response, BEHAVIOR_SCHEMA, use_threads=use_threads)


def _behavior_batch(text: pa.Array) -> pa.RecordBatch:
    opening = pc.utf8_slice_codeunits(text, 0, OPENING_CHARS)
    return pa.RecordBatch.from_arrays(
        [
            count_words(text),
            pc.match_substring_regex(opening, AGREEMENT.pattern),
            pc.match_substring_regex(opening, REFUSALS.pattern),
        ],
        schema=BEHAVIOR_SCHEMA,
    )


# --- Text kernels shared with prompt_style ---------------------------------------------------


def text_slices(values: TextArray | Iterable[str | None]) -> list[pa.Array]:
    """The input as string arrays of at most ``SLICE_ROWS`` rows (zero-copy where possible)."""
    if isinstance(values, pa.ChunkedArray):
        chunks = list(values.chunks)
    elif isinstance(values, pa.Array):
        chunks = [values]
    else:
        chunks = [pa.array(values, pa.string())]
    out: list[pa.Array] = []
    for chunk in chunks:
        text = _as_text(chunk)
        out.extend(text.slice(start, SLICE_ROWS) for start in range(0, len(text), SLICE_ROWS))
    return out


def _as_text(array: pa.Array) -> pa.Array:
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return array
    if pa.types.is_dictionary(kind):
        return _as_text(array.dictionary_decode())
    if pa.types.is_null(kind) or pa.types.is_string_view(kind):
        return array.cast(pa.large_string())
    raise TypeError(f"expected an array of strings, got {kind}")


def map_text_slices(
    build: Callable[[pa.Array], pa.RecordBatch],
    values: TextArray | Iterable[str | None],
    schema: pa.Schema,
    *,
    use_threads: bool = True,
) -> pa.Table:
    """Run ``build`` on every slice of ``values`` (in parallel) and stack the batches."""
    slices = text_slices(values)
    workers = min(len(slices), os.cpu_count() or 1) if use_threads else 1
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            batches = list(pool.map(build, slices))
    else:
        batches = [build(s) for s in slices]
    return pa.Table.from_batches(batches, schema=schema)


def count_words(text: pa.Array) -> pa.Array:
    """Words per string: runs of characters that are not Unicode whitespace, exactly the
    length of Python's ``str.split()``; int32, null where ``text`` is null.

    A regex count (``count_substring_regex(r"\\S+")``) pays per match, ~100 ns a word (15 s
    for a million 130-word replies). This reads the UTF-8 bytes with numpy instead, in
    cache-sized blocks of whole rows: mark whitespace bytes, mark word starts (non-space
    after space, or at a row start), pack the starts into bits and difference their running
    popcount at the row offsets.
    """
    text = _as_text(text)
    n = len(text)
    if n == 0:
        return pa.array([], pa.int32())
    _, offsets_buffer, data_buffer = text.buffers()
    offset_type = np.int64 if pa.types.is_large_string(text.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, offset_type, count=text.offset + n + 1)
    offsets = offsets[text.offset :].astype(np.int64)
    data: U8Array = (
        np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    )
    counts = np.zeros(n, np.int32)
    # Blocks of whole rows, ~_BLOCK_BYTES each; a longer row is a block of its own.
    marks = np.arange(offsets[0], offsets[-1], _BLOCK_BYTES)
    cuts = np.unique(np.r_[0, np.searchsorted(offsets, marks, side="right") - 1, n])
    widest = int(np.max(offsets[cuts[1:]] - offsets[cuts[:-1]], initial=0))
    scratch = _Scratch(widest)
    for r0, r1 in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        rel = offsets[r0 : r1 + 1] - offsets[r0]
        if rel[-1] > 0:
            counts[r0:r1] = _block_word_counts(data[offsets[r0] : offsets[r1]], rel, scratch)
    if text.null_count:
        return pa.array(counts, pa.int32(), mask=text.is_null().to_numpy(zero_copy_only=False))
    return pa.array(counts, pa.int32())


class _Scratch:
    """Reusable block buffers: fresh allocations would page-fault on every block."""

    def __init__(self, size: int) -> None:
        self.space = np.empty(size, np.bool_)
        self.other = np.empty(size, np.bool_)
        self.byte = np.empty(size, np.uint8)
        self.packed = np.zeros(size // 8 + 2, np.uint8)
        self.before = np.zeros(size // 8 + 3, np.int64)


# Popcount of a byte, for numpy < 2.0 (no np.bitwise_count).
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)
_bitwise_count: Callable[[Any], Any] = getattr(np, "bitwise_count", _POPCOUNT.__getitem__)


def _block_word_counts(seg: U8Array, rel: I64Array, s: _Scratch) -> I64Array:
    size = seg.size
    space, starts, tmp = s.space[:size], s.other[:size], s.byte[:size]
    # ASCII whitespace as str.isspace(): 9-13 and 28-32 (uint8 arithmetic wraps below 0).
    np.subtract(seg, 9, out=tmp)
    np.less(tmp, 5, out=space)
    np.subtract(seg, 28, out=tmp)
    np.less(tmp, 5, out=starts)
    np.logical_or(space, starts, out=space)
    if seg.max() >= 0xC2:
        _mark_unicode_spaces(seg, space)
    # A word starts at a non-space byte after a space byte, or at a row's first byte.
    starts[0] = not space[0]
    np.greater(space[:-1], space[1:], out=starts[1:])
    firsts = rel[:-1][rel[:-1] < rel[1:]]
    starts[firsts] = ~space[firsts]
    # Words before byte b = set bits of the packed starts before bit b.
    nbytes = (size + 7) // 8
    packed = s.packed[: nbytes + 1]
    packed[:nbytes] = np.packbits(starts, bitorder="little")
    packed[nbytes] = 0
    before = s.before[: nbytes + 2]
    np.cumsum(_bitwise_count(packed), out=before[1:])

    def words_before(b: I64Array) -> I64Array:
        byte = b >> 3
        below = (np.left_shift(1, b & 7) - 1).astype(np.uint8)
        result: I64Array = before[byte] + _bitwise_count(packed[byte] & below)
        return result

    return words_before(rel[1:]) - words_before(rel[:-1])


def _mark_unicode_spaces(seg: U8Array, space: BoolArray) -> None:
    """Also mark the UTF-8 bytes of non-ASCII whitespace: U+0085, U+00A0 (C2 xx), U+1680
    (E1 9A 80), U+2000-200A, U+2028, U+2029, U+202F (E2 80 xx), U+205F (E2 81 9F), U+3000
    (E3 80 80). Rows hold whole UTF-8 sequences, so none straddles a block."""
    lead = np.flatnonzero((seg == 0xC2) | ((seg - 0xE1) < 3))
    lead = lead[lead + 1 < seg.size]
    if lead.size == 0:
        return
    b0, b1 = seg[lead], seg[lead + 1]
    two = lead[(b0 == 0xC2) & ((b1 == 0x85) | (b1 == 0xA0))]
    space[two] = True
    space[two + 1] = True
    lead3 = lead[lead + 2 < seg.size]
    b0, b1, b2 = seg[lead3], seg[lead3 + 1], seg[lead3 + 2]
    general = (b2 >= 0x80) & (b2 <= 0x8A) | (b2 == 0xA8) | (b2 == 0xA9) | (b2 == 0xAF)
    three = lead3[
        ((b0 == 0xE1) & (b1 == 0x9A) & (b2 == 0x80))
        | ((b0 == 0xE2) & (b1 == 0x80) & general)
        | ((b0 == 0xE2) & (b1 == 0x81) & (b2 == 0x9F))
        | ((b0 == 0xE3) & (b1 == 0x80) & (b2 == 0x80))
    ]
    for k in range(3):
        space[three + k] = True
