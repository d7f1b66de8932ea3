"""Row validation, vectorised: raw batch -> typed rows ready to store, plus rejects.

A row is rejected, with its line, column and reason, when a value breaks the data contract
(docs/DATA_CONTRACT.md). Every failing column of a row is reported; the row is counted once.
Rows whose every field is empty (blank lines) carry no data and are counted as blank.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

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
class TimestampRange:
    """The instants a row may carry (naive UTC); anything outside is a rejected row.

    Mostly this catches epochs in the wrong unit (microseconds read as milliseconds land in
    year 58,729) and placeholder dates (0001-01-01, 9999-12-31) before they reach the analysis.
    """

    earliest: datetime
    latest: datetime

    @classmethod
    def ending_days_after(
        cls, earliest: date, days_ahead: int, now: datetime | None = None
    ) -> TimestampRange:
        now = now or datetime.now(UTC)
        latest = now.astimezone(UTC).replace(tzinfo=None) + timedelta(days=days_ahead)
        return cls(datetime(earliest.year, earliest.month, earliest.day), latest)

    def describe(self) -> str:
        return f"{self.earliest:%Y-%m-%d} to {self.latest:%Y-%m-%d}"

    def bounds_us(self) -> tuple[int, int]:
        epoch = datetime(1970, 1, 1)
        return (
            (self.earliest - epoch) // timedelta(microseconds=1),
            (self.latest - epoch) // timedelta(microseconds=1),
        )


DEFAULT_TIMESTAMP_MIN = date(2000, 1, 1)
DEFAULT_TIMESTAMP_MAX_DAYS_AHEAD = 100


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


def check_batch(
    batch: RawBatch, contract: InputContract, timestamps: TimestampRange | None = None
) -> CheckedBatch:
    """Validate and type one raw batch against ``contract``; instants outside ``timestamps``
    (default: the default range, up to 100 days from now) are rejected."""
    if timestamps is None:
        timestamps = TimestampRange.ending_days_after(
            DEFAULT_TIMESTAMP_MIN, DEFAULT_TIMESTAMP_MAX_DAYS_AHEAD
        )
    table = batch.table
    n = table.num_rows
    raw = {name: table.column(name) for name in table.column_names}
    blank = np.ones(n, dtype=bool)
    for values in raw.values():
        blank &= values.is_null().to_numpy(zero_copy_only=False)
    for row, *_ in batch.problems:
        blank[row] = False  # a line with a problem had something on it
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
    typed["timestamp"] = _timestamp(column("timestamp"), failures, timestamps)
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
    # " e1 " and "e1" are one identifier: white space around it is never part of it.
    values = pc.utf8_trim_whitespace(_as_text(values))
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


_UNIT_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _timestamp(values: pa.Array, failures: _Failures, span: TimestampRange) -> pa.Array:
    """UTC instants: ISO-8601 with an offset (converted), naive ISO (taken as UTC) or epoch ms.

    Every instant is carried as int64 microseconds and checked against ``span`` before it
    becomes a timestamp, so that no value, however large, can overflow a conversion.
    """
    n = len(values)
    lo_us, hi_us = span.bounds_us()
    micros = np.zeros(n, dtype=np.int64)
    known = np.zeros(n, dtype=bool)  # holds an instant in ``micros`` still to range-check
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        if pa.types.is_date(values.type):
            days = pc.cast(pc.cast(values, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
            native, unit = days.astype("float64") * 86_400, "s"
        else:
            # A zoned timestamp's integers are UTC already; a naive one is taken as UTC.
            unit = values.type.unit
            native = pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False)
        _native_instants(values, native, unit, span, failures, micros, known)
        return _checked_instants(values, micros, known, span, failures)
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        epoch_ms = np.asarray(values.to_numpy(zero_copy_only=False), dtype="float64")
        text = None
    else:
        text = pd.Series(_as_text(values).to_pandas(), dtype="object")
        digits = pc.fill_null(pc.match_substring_regex(values, r"^\s*-?\d+\s*$"), False)
        digits_np = np.asarray(digits.to_numpy(zero_copy_only=False), dtype=bool)
        epoch_ms = np.full(n, np.nan)
        if digits_np.any():
            epoch_ms[digits_np] = pd.to_numeric(text[digits_np], errors="coerce")
    present = values.is_valid().to_numpy(zero_copy_only=False)
    is_epoch = ~np.isnan(epoch_ms)
    with np.errstate(invalid="ignore"):
        in_range = is_epoch & (epoch_ms >= lo_us / 1000) & (epoch_ms <= hi_us / 1000)
    micros[in_range] = epoch_ms[in_range].astype(np.int64) * 1000
    known |= in_range
    for mask, reason in _epoch_reasons(epoch_ms, is_epoch & ~in_range, span):
        failures.add("timestamp", mask, reason, values)
    if text is not None:
        iso = present & ~is_epoch
        if iso.any():
            parsed = pd.to_datetime(text[iso], utc=True, errors="coerce", format="ISO8601")
            naive = parsed.dt.tz_convert(None).astype("datetime64[us]").to_numpy()
            ok = ~np.isnat(naive)
            rows = np.flatnonzero(iso)
            micros[rows[ok]] = naive[ok].astype(np.int64)
            known[rows[ok]] = True
            unparsed = np.zeros(n, dtype=bool)
            unparsed[rows[~ok]] = True
            # A year too far out for a datetime (58729-01-01) is out of range, not garbage.
            years = text[unparsed].str.extract(r"^\s*([+-]?\d{4,})-\d\d", expand=False)
            for label, year in years.dropna().items():
                if span.earliest.year <= int(year) <= span.latest.year:
                    continue  # a malformed date in a sane year: not a timestamp (below)
                row = int(str(label))  # ``text`` has a RangeIndex: label = position
                reason = f"year {int(year)} is out of range {span.describe()}"
                failures.add_one(row, "timestamp", reason, text.iloc[row])
    return _checked_instants(values, micros, known, span, failures)


_NOT_A_TIMESTAMP = (
    "not a timestamp: expected ISO-8601 (with offset, or naive = UTC) or epoch milliseconds"
)


def _epoch_reasons(
    epoch_ms: np.ndarray, outside: np.ndarray, span: TimestampRange
) -> list[tuple[np.ndarray, str]]:
    """Why each epoch outside ``span`` is refused, saying which unit it looks like."""
    lo_ms, hi_ms = (b / 1000 for b in span.bounds_us())
    size = np.abs(np.nan_to_num(epoch_ms, nan=0.0))
    reasons: list[tuple[np.ndarray, str]] = []
    for factor, unit in ((1e-3, "seconds"), (1e3, "microseconds"), (1e6, "nanoseconds")):
        looks = outside & (size >= lo_ms * factor) & (size <= hi_ms * factor)
        outside = outside & ~looks
        if unit == "seconds":
            why = "epoch value is before 1973 as milliseconds (it looks like epoch seconds)"
        else:
            why = f"epoch value looks like epoch {unit}"
        reasons.append((looks, f"{why}; the contract takes epoch milliseconds"))
    small = outside & (size < MIN_EPOCH_MS)
    reasons.append(
        (small, "epoch value is before 1973 as milliseconds; the contract takes epoch milliseconds")
    )
    reasons.append(
        (outside & ~small, f"epoch value as milliseconds is out of range {span.describe()}")
    )
    return reasons


def _native_instants(
    values: pa.Array,
    native: np.ndarray,
    unit: str,
    span: TimestampRange,
    failures: _Failures,
    micros: np.ndarray,
    known: np.ndarray,
) -> None:
    """Typed instants (any unit) -> microseconds; those a microsecond cannot hold are refused."""
    present = values.is_valid().to_numpy(zero_copy_only=False)
    per_second = _UNIT_PER_SECOND[unit]
    seconds = np.where(present, native.astype("float64") / per_second, 0.0)
    lo_us, hi_us = span.bounds_us()
    fits = present & (seconds >= lo_us / 1e6 - 1) & (seconds <= hi_us / 1e6 + 1)
    rows = np.flatnonzero(fits)
    whole = native[rows].astype(np.int64)
    micros[rows] = whole * (1_000_000 // per_second) if per_second <= 1_000_000 else whole // 1000
    known[rows] = True
    for row in np.flatnonzero(present & ~fits).tolist():
        year = int(seconds[row] // 31_556_952) + 1970  # the mean Gregorian year
        shown = f"{int(native[row])} ({unit} since 1970)" if unit != "s" else str(values[row])
        failures.add_one(row, "timestamp", f"year {year} is out of range {span.describe()}", shown)


def _checked_instants(
    values: pa.Array,
    micros: np.ndarray,
    known: np.ndarray,
    span: TimestampRange,
    failures: _Failures,
) -> pa.Array:
    lo_us, hi_us = span.bounds_us()
    outside = known & ((micros < lo_us) | (micros > hi_us))
    for row in np.flatnonzero(outside).tolist():
        when = np.datetime64(int(micros[row]), "us")  # numpy: any year, even negative ones
        year = int(when.astype("datetime64[Y]").astype(np.int64)) + 1970
        if span.earliest.year <= year <= span.latest.year:
            what = str(when.astype("datetime64[D]"))
        else:
            what = f"year {year}"
        reason = f"{what} is out of range {span.describe()}"
        failures.add_one(row, "timestamp", reason, _value_at(values, row))
    ok = known & ~outside
    present = values.is_valid().to_numpy(zero_copy_only=False)
    for row in np.flatnonzero(present & ~known).tolist():
        if (row, "timestamp") not in failures.reported:
            failures.add_one(row, "timestamp", _NOT_A_TIMESTAMP, _value_at(values, row))
    return pa.array(np.where(ok, micros, 0), type=TIMESTAMP, mask=~ok)


def _value_at(values: pa.Array, row: int) -> object:
    try:
        return values[row].as_py()
    except (ValueError, OverflowError, pa.ArrowException):
        return str(values[row])


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
            # default=str: a struct may hold decimals or bytes, which JSON has no type for
            None
            if v is None
            else orjson.dumps(dict(v) if isinstance(v, list) else v, default=str).decode()
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
