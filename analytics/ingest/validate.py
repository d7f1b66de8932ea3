"""Row validation, vectorised: raw batch -> typed rows ready to store, plus rejects.

A row is rejected, with its line, column and reason, when a value breaks the data contract
(docs/DATA_CONTRACT.md). Every failing column of a row is reported; the row is counted once.
Rows whose every field is empty (blank lines) carry no data and are counted as blank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analytics.ingest.contract import InputContract
from analytics.ingest.readers import RawBatch, count_byte_per_row
from analytics.models import IngestKind

MAX_IDENTIFIER = 255
MAX_VALUE_IN_REJECT = 200
# Epoch values below this are taken to be seconds by mistake (it is 1973-03-03 in milliseconds).
MIN_EPOCH_MS = 100_000_000_000
TIMESTAMP = pa.timestamp("us")
_TRUE = {"1", "true", "t", "yes", "1.0"}
_FALSE = {"0", "false", "f", "no", "0.0"}


@dataclass(frozen=True)
class Reject:
    line: int
    column: str
    reason: str
    value: str | None


@dataclass
class CheckedBatch:
    """Valid rows (typed, in file order) with their lines, and what was refused."""

    table: pa.Table
    lines: np.ndarray
    rejects: list[Reject]
    rows_rejected: int
    rows_blank: int


class _Failures:
    def __init__(self, batch: RawBatch) -> None:
        self.batch = batch
        self.bad = np.zeros(batch.table.num_rows, dtype=bool)
        self.rejects: list[tuple[int, int, str, str, str | None]] = []
        self.reported: set[tuple[int, str]] = set()

    def add(self, column: str, mask: np.ndarray, reason: str, raw: pa.Array | None) -> None:
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return
        values = raw.take(pa.array(rows)).to_pylist() if raw is not None else [None] * rows.size
        for row, value in zip(rows.tolist(), values, strict=True):
            self.add_one(row, column, reason, value)

    def add_one(self, row: int, column: str, reason: str, value: object) -> None:
        """Record why ``row`` is bad; a column's first reason is the one reported."""
        self.bad[row] = True
        if (row, column) in self.reported:
            return
        self.reported.add((row, column))
        order = {c: i for i, c in enumerate(self.batch.table.column_names)}.get(column, 99)
        # NUL cannot be stored in PostgreSQL text; show it escaped.
        shown = None if value is None else str(value)[:MAX_VALUE_IN_REJECT].replace("\x00", "\\x00")
        self.rejects.append((row, order, column, reason, shown))

    def sorted_rejects(self) -> list[Reject]:
        lines = self.batch.lines
        self.rejects.sort(key=lambda r: (r[0], r[1]))
        return [Reject(int(lines[r]), c, why, v) for r, _, c, why, v in self.rejects]


def check_batch(batch: RawBatch, contract: InputContract) -> CheckedBatch:
    """Validate and type one raw batch against ``contract``."""
    table = batch.table
    n = table.num_rows
    raw = {name: table.column(name) for name in table.column_names}
    blank = np.ones(n, dtype=bool)
    for values in raw.values():
        blank &= values.is_null().to_numpy(zero_copy_only=False)
    failures = _Failures(batch)
    for row, column_name, reason, value in batch.problems:
        failures.add_one(row, column_name, reason, value)

    def column(name: str) -> pa.Array:
        return raw[name] if name in raw else pa.nulls(n, type=pa.string())

    typed: dict[str, pa.Array] = {}
    for name in contract.required:
        failures.add(
            name,
            column(name).is_null().to_numpy(zero_copy_only=False) & ~blank,
            f"{name} is missing",
            None,
        )
    for name in ("event_id", "user_id", "experiment_id", "variation_id", "feature_key"):
        if name in contract.columns:
            typed[name] = _identifier(name, column(name), failures)
    typed["timestamp"] = _timestamp(column("timestamp"), failures)
    if contract.kind is IngestKind.exposures:
        typed["attributes"] = _json_object(column("attributes"), failures)
    else:
        typed["prompt"] = _text("prompt", column("prompt"), failures, required=True)
        typed["response"] = _text("response", column("response"), failures)
        typed["model_version"] = _text("model_version", column("model_version"), failures, 255)
        typed["session_id"] = _text("session_id", column("session_id"), failures, 255)
        typed["latency_ms"] = _latency(column("latency_ms"), failures)
        typed["feedback"] = _feedback(column("feedback"), failures)
        typed["complaint"] = _flag("complaint", column("complaint"), failures)
        typed["retry"] = _flag("retry", column("retry"), failures)

    failures.bad &= ~blank
    keep = ~failures.bad & ~blank
    out = pa.table({name: typed[name] for name in contract.columns})
    return CheckedBatch(
        table=out if keep.all() else out.filter(pa.array(keep)),
        lines=batch.lines[keep],
        rejects=failures.sorted_rejects(),
        rows_rejected=int(failures.bad.sum()),
        rows_blank=int(blank.sum()),
    )


def _as_text(values: pa.Array) -> pa.Array:
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return values.cast(pa.string())
    return pc.cast(values, pa.string())


def _blank_mask(values: pa.Array) -> np.ndarray:
    """Present but empty or only white space (a regex that stops at the first other char)."""
    blank = pc.match_substring_regex(values, r"^\s*$")
    return np.asarray(pc.fill_null(blank, False).to_numpy(zero_copy_only=False), dtype=bool)


def _nul_mask(values: pa.Array) -> np.ndarray:
    return count_byte_per_row(values, 0) > 0


def _identifier(name: str, values: pa.Array, failures: _Failures) -> pa.Array:
    values = _as_text(values)
    failures.add(name, _blank_mask(values), f"{name} is empty", values)
    too_long = pc.fill_null(pc.greater(pc.utf8_length(values), MAX_IDENTIFIER), False)
    failures.add(
        name,
        too_long.to_numpy(zero_copy_only=False),
        f"{name} is longer than {MAX_IDENTIFIER} characters",
        values,
    )
    failures.add(name, _nul_mask(values), f"{name} contains a NUL character", values)
    return values


def _text(
    name: str,
    values: pa.Array,
    failures: _Failures,
    max_length: int | None = None,
    *,
    required: bool = False,
) -> pa.Array:
    values = _as_text(values)
    if required:
        failures.add(name, _blank_mask(values), f"{name} is empty", values)
    if max_length is not None:
        too_long = pc.fill_null(pc.greater(pc.utf8_length(values), max_length), False)
        failures.add(
            name,
            too_long.to_numpy(zero_copy_only=False),
            f"{name} is longer than {max_length} characters",
            values,
        )
    failures.add(name, _nul_mask(values), f"{name} contains a NUL character", values)
    return values


def _timestamp(values: pa.Array, failures: _Failures) -> pa.Array:
    """UTC instants: ISO-8601 with an offset (converted), naive ISO (taken as UTC) or epoch ms."""
    present = values.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_timestamp(values.type):
        if values.type.tz is not None:
            values = pc.cast(values, pa.timestamp(values.type.unit, tz="UTC"))
            values = values.cast(pa.timestamp(values.type.unit))
        return pc.cast(values, TIMESTAMP)
    if pa.types.is_date(values.type):
        return pc.cast(pc.cast(values, pa.date32()), TIMESTAMP)
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        epoch_ms = pd.Series(values.to_numpy(zero_copy_only=False), dtype="float64")
        text = None
    else:
        text = pd.Series(_as_text(values).to_pandas(), dtype="object")
        digits = pc.fill_null(pc.match_substring_regex(values, r"^\s*-?\d+\s*$"), False)
        digits_np = digits.to_numpy(zero_copy_only=False)
        epoch_ms = pd.Series(np.nan, index=text.index)
        if digits_np.any():
            epoch_ms[digits_np] = pd.to_numeric(text[digits_np], errors="coerce")
    is_epoch = epoch_ms.notna().to_numpy()
    too_small = is_epoch & (epoch_ms.abs().fillna(np.inf) < MIN_EPOCH_MS).to_numpy()
    failures.add(
        "timestamp",
        too_small,
        "epoch value is before 1973 as milliseconds; the contract takes epoch milliseconds",
        values,
    )
    result = pd.Series(pd.NaT, index=range(len(values)), dtype="datetime64[us]")
    ok_epoch = is_epoch & ~too_small
    if ok_epoch.any():
        result[ok_epoch] = pd.to_datetime(epoch_ms[ok_epoch].astype("int64"), unit="ms").astype(
            "datetime64[us]"
        )
    if text is not None:
        iso = present & ~is_epoch
        if iso.any():
            parsed = pd.to_datetime(text[iso], utc=True, errors="coerce", format="ISO8601")
            result[iso] = parsed.dt.tz_convert(None).astype("datetime64[us]")
    unparsed = present & ~too_small & result.isna().to_numpy()
    failures.add(
        "timestamp",
        unparsed,
        "not a timestamp: expected ISO-8601 (with offset, or naive = UTC) or epoch milliseconds",
        values,
    )
    return pa.array(result.to_numpy(), type=TIMESTAMP, from_pandas=True)


def _numbers(name: str, values: pa.Array, failures: _Failures) -> pd.Series:
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return pd.Series(values.to_numpy(zero_copy_only=False), dtype="float64")
    if pa.types.is_boolean(values.type):
        return pd.Series(values.to_numpy(zero_copy_only=False), dtype="float64")
    try:  # fast path: every value is a number
        return pd.Series(
            pc.cast(pc.utf8_trim_whitespace(values), pa.float64()).to_numpy(zero_copy_only=False),
            dtype="float64",
        )
    except pa.ArrowException:  # a value that is not a number: the slow path says which
        pass
    text = pd.Series(_as_text(values).to_pandas(), dtype="object")
    numbers = pd.to_numeric(text.str.strip(), errors="coerce").astype("float64")
    bad = text.notna().to_numpy() & numbers.isna().to_numpy()
    failures.add(name, bad, f"{name} is not a number", values)
    return numbers


def _latency(values: pa.Array, failures: _Failures) -> pa.Array:
    numbers = _numbers("latency_ms", values, failures)
    array = numbers.to_numpy()
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(array) & (~np.isfinite(array) | (array < 0))
    failures.add("latency_ms", bad, "latency_ms must be a finite number >= 0", values)
    return pa.array(array, type=pa.float64(), from_pandas=True)


def _feedback(values: pa.Array, failures: _Failures) -> pa.Array:
    numbers = _numbers("feedback", values, failures).to_numpy()
    known = ~np.isnan(numbers)
    bad = known & ~np.isin(numbers, (-1.0, 0.0, 1.0))
    failures.add("feedback", bad, "feedback must be -1, 0 or 1", values)
    out = np.where(known & ~bad, numbers, 0).astype(np.int16)
    return pa.array(out, type=pa.int16(), mask=~(known & ~bad))


def _flag(name: str, values: pa.Array, failures: _Failures) -> pa.Array:
    if pa.types.is_boolean(values.type):
        return values
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        numbers = values.to_numpy(zero_copy_only=False).astype("float64")
        known = ~np.isnan(numbers)
        bad = known & ~np.isin(numbers, (0.0, 1.0))
        failures.add(name, bad, f"{name} must be 0/1 or true/false", values)
        return pa.array(numbers == 1.0, type=pa.bool_(), mask=~(known & ~bad))
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(_as_text(values)))
    is_true = pc.fill_null(pc.is_in(lowered, pa.array(sorted(_TRUE))), False).to_numpy(
        zero_copy_only=False
    )
    is_false = pc.fill_null(pc.is_in(lowered, pa.array(sorted(_FALSE))), False).to_numpy(
        zero_copy_only=False
    )
    present = values.is_valid().to_numpy(zero_copy_only=False)
    bad = present & ~is_true & ~is_false
    failures.add(name, bad, f"{name} must be 0/1 or true/false", values)
    return pa.array(is_true, type=pa.bool_(), mask=~(is_true | is_false))


def _json_object(values: pa.Array, failures: _Failures) -> pa.Array:
    """Exposure attributes: a JSON object, stored as compact JSON text."""
    if pa.types.is_struct(values.type) or pa.types.is_map(values.type):
        texts = [
            None if v is None else orjson.dumps(dict(v) if isinstance(v, list) else v).decode()
            for v in values.to_pylist()
        ]
        return pa.array(texts, type=pa.string())
    raw = _as_text(values).to_pylist()
    out: list[str | None] = []
    bad = np.zeros(len(raw), dtype=bool)
    for i, text in enumerate(raw):
        if text is None or not text.strip():
            out.append(None)
            continue
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            out.append(orjson.dumps(parsed).decode())
        else:
            bad[i] = True
            out.append(None)
    failures.add("attributes", bad, "attributes must be a JSON object", values)
    return pa.array(out, type=pa.string())
