"""Streaming readers: one input file -> batches of raw columns, each row with its line number.

Every reader yields :class:`RawBatch` objects of bounded size, whatever the file size, and
never materialises the file. Structural problems (a header without a required column, bad
quoting, a wrong number of fields, invalid UTF-8 or JSON) raise :class:`IngestError` naming the
file, line and column; the fast Arrow parsers do not know line numbers, so on failure the file
is re-scanned with Python's own parsers to say exactly where.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import shutil
import sys
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from analytics.errors import IngestError
from analytics.ingest.contract import InputContract

Format = Literal["csv", "jsonl", "parquet"]
# A readable byte stream: an open file, a gzip stream, or one of the pass-through readers here.
ByteSource = IO[bytes] | io.RawIOBase | gzip.GzipFile
CSV_BLOCK_BYTES = 4 << 20  # the streaming reader reads ~20 blocks ahead: keep them small
SCAN_BLOCK_BYTES = 4 << 20
JSONL_BATCH_ROWS = 50_000
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class FileFormat:
    format: Format
    gzip: bool


@dataclass
class RawBatch:
    """Rows as read. ``lines[i]`` is where row i starts: its 1-based line (Parquet: row).

    ``problems`` are (row, column, reason, value) found while reading (a JSON object in a
    scalar field, say); validation turns them into rejects.
    """

    table: pa.Table
    lines: np.ndarray
    problems: list[tuple[int, str, str, str | None]] = field(default_factory=list)

    def slice(self, start: int) -> RawBatch:
        """The rows from ``start`` on."""
        problems = [(r - start, c, why, v) for r, c, why, v in self.problems if r >= start]
        return RawBatch(self.table.slice(start), self.lines[start:], problems)

    def head(self, stop: int) -> RawBatch:
        """The rows before ``stop``."""
        problems = [p for p in self.problems if p[0] < stop]
        return RawBatch(self.table.slice(0, stop), self.lines[:stop], problems)


def detect_format(path: Path) -> FileFormat:
    """The format from the file name: ``.csv``, ``.jsonl``/``.ndjson``, ``.parquet``, + ``.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    is_gzip = bool(suffixes) and suffixes[-1] == ".gz"
    if is_gzip:
        suffixes = suffixes[:-1]
    fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise IngestError(
            path, "unknown format: name the file .csv, .jsonl or .parquet (optionally + .gz)"
        )
    return FileFormat(fmt, is_gzip)


class HashingReader(io.RawIOBase):
    """A read-only stream that feeds every byte it passes on into a SHA-256."""

    def __init__(self, raw: ByteSource) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = cast(io.RawIOBase, self._raw).readinto(buffer)
        if n:
            view = memoryview(buffer)[:n]
            self.sha256.update(view)
            self.bytes_read += n
        return n or 0


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def open_text_bytes(path: Path, is_gzip: bool, raw: ByteSource | None = None) -> ByteSource:
    """The decompressed bytes of ``path``, or of ``raw``, its open handle (which the caller
    keeps and closes)."""
    if raw is None:
        return cast(IO[bytes], gzip.open(path, "rb")) if is_gzip else path.open("rb")
    if not is_gzip:
        return raw
    return gzip.GzipFile(fileobj=raw, mode="rb")


@contextmanager
def _decompressed(path: Path, is_gzip: bool, stream: ByteSource | None) -> Iterator[ByteSource]:
    """The decompressed bytes; closes only what it opened (the caller closes ``stream``)."""
    if stream is None:
        with open_text_bytes(path, is_gzip) as handle:
            yield handle
    elif is_gzip:
        with gzip.GzipFile(fileobj=stream, mode="rb") as inflated:  # leaves ``stream`` open
            yield inflated
    else:
        yield stream


def read_batches(
    path: Path,
    file_format: FileFormat,
    contract: InputContract,
    *,
    stream: ByteSource | None = None,
) -> Iterator[RawBatch]:
    """Batches of ``path`` in file order; ``stream`` (if given) is the open raw file."""
    readers = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}
    try:
        yield from readers[file_format.format](path, file_format, contract, stream)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise IngestError(path, f"not a valid gzip file: {exc}") from exc


def check_columns(
    path: Path, names: list[str], contract: InputContract, *, header_line: int | None = 1
) -> list[str]:
    """Refuse a header that lacks a required column or repeats one; return the extra columns."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise IngestError(
                path, f"column {name!r} appears twice in the header", line=header_line
            )
        seen.add(name)
    missing = [c for c in contract.required if c not in seen]
    if missing:
        raise IngestError(
            path,
            f"missing required column {missing[0]!r} (required: {', '.join(contract.required)})",
            line=header_line,
            column=missing[0],
        )
    return [n for n in names if n not in contract.columns]


# --- CSV -------------------------------------------------------------------------------------


def _csv_header(path: Path, file_format: FileFormat) -> list[str]:
    try:
        with open_text_bytes(path, file_format.gzip) as raw:
            first = raw.readline()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise IngestError(path, f"not a valid gzip file: {exc}") from exc
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(path, "invalid UTF-8 in the header", line=1, byte=exc.start) from exc
    header = next(csv.reader([text]), None)
    if not header or not any(name.strip() for name in header):
        raise IngestError(path, "the file is empty: a header row is required", line=1)
    return header


def _read_csv(
    path: Path, file_format: FileFormat, contract: InputContract, stream: ByteSource | None
) -> Iterator[RawBatch]:
    names = _csv_header(path, file_format)
    check_columns(path, names, contract)
    with _decompressed(path, file_format.gzip, stream) as decompressed:
        yield from _parse_csv(path, file_format, names, _QuoteCounter(decompressed))


def _parse_csv(
    path: Path, file_format: FileFormat, names: list[str], source: _QuoteCounter
) -> Iterator[RawBatch]:
    next_line = 2
    try:
        # Every column is read as text so that a malformed value is a rejected row, not a
        # failed file; blank lines are kept as all-null rows so that line numbers stay exact.
        reader = pa_csv.open_csv(
            source,
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, encoding="utf8"),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
        for record_batch in reader:
            table = pa.Table.from_batches([record_batch])
            if table.num_rows == 0:
                continue
            lines, next_line = _csv_line_numbers(table, next_line)
            yield RawBatch(table, lines)
        if source.quotes % 2:
            # Arrow accepts a quoted field left open at the end of the file, which is what a
            # truncated file looks like; Python's strict parser says where it starts.
            error = locate_csv_error(path, file_format, len(names), "unterminated quote")
            if error.line is not None:
                raise error
    except pa.ArrowInvalid as exc:
        raise locate_csv_error(path, file_format, len(names), str(exc)) from exc


def _csv_line_numbers(table: pa.Table, first_line: int) -> tuple[np.ndarray, int]:
    """Line where each row starts, counting the newlines quoted inside earlier rows' values."""
    extra = np.zeros(table.num_rows, dtype=np.int64)
    for column in table.columns:
        extra += count_byte_per_row(column, ord("\n"))
    starts = first_line + np.arange(table.num_rows, dtype=np.int64)
    starts[1:] += np.cumsum(extra[:-1])
    return starts, int(starts[-1] + extra[-1] + 1)


def count_byte_per_row(column: pa.Array | pa.ChunkedArray, byte: int) -> np.ndarray:
    """How often ``byte`` occurs in each string of ``column``, read straight off its buffers.

    A vectorised scan of the bytes, block by block so that its scratch memory stays small;
    much faster than a per-string substring search.
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    counts = []
    for chunk in chunks:
        n = len(chunk)
        out = np.zeros(n, dtype=np.int64)
        if n and pa.types.is_string(chunk.type):
            _, offsets_buffer, data = chunk.buffers()
            if data is not None:
                offsets = np.frombuffer(
                    offsets_buffer, dtype=np.int32, count=n + 1, offset=chunk.offset * 4
                )
                raw = np.frombuffer(data, dtype=np.uint8)
                for start in range(int(offsets[0]), int(offsets[-1]), SCAN_BLOCK_BYTES):
                    stop = min(start + SCAN_BLOCK_BYTES, int(offsets[-1]))
                    hits = np.flatnonzero(raw[start:stop] == byte) + start
                    if hits.size:
                        rows = np.searchsorted(offsets, hits, side="right") - 1
                        out += np.bincount(rows, minlength=n)
        counts.append(out)
    return np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)


def locate_csv_error(
    path: Path, file_format: FileFormat, n_columns: int, arrow_message: str
) -> IngestError:
    """Find where a CSV stops being parseable: the slow, exact path, run only on failure."""
    with open_text_bytes(path, file_format.gzip) as raw:
        offset = 0
        # A UTF-8 sequence never contains a newline byte, so decoding line by line is exact.
        for line_number, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return IngestError(path, "invalid UTF-8", line=line_number, byte=offset + exc.start)
            offset += len(line)
    csv.field_size_limit(sys.maxsize)
    too_big = "straddling" in arrow_message
    with open_text_bytes(path, file_format.gzip) as raw:
        text = io.TextIOWrapper(cast(Any, raw), encoding="utf-8-sig", newline="")
        reader = csv.reader(text, strict=True)
        start = 1  # the line where the record being read starts
        try:
            for record in reader:
                if record and len(record) != n_columns:
                    return IngestError(
                        path,
                        f"expected {n_columns} fields, found {len(record)}",
                        line=reader.line_num,
                    )
                if too_big and sum(map(len, record)) >= CSV_BLOCK_BYTES // 4:
                    size = len(",".join(record).encode())
                    if size >= CSV_BLOCK_BYTES:
                        return IngestError(
                            path,
                            f"a row of {size / 2**20:.1f} MiB: CSV rows are read up to "
                            f"{CSV_BLOCK_BYTES >> 20} MiB (use JSON Lines or Parquet for "
                            "larger values)",
                            line=start,
                        )
                start = reader.line_num + 1
        except csv.Error as exc:
            if reader.line_num > start and "end of data" not in str(exc):
                # The record spans lines: most likely a quote opened at its start was left open.
                return IngestError(
                    path,
                    f"malformed CSV: {exc} (at line {reader.line_num}, in the row starting at "
                    f"line {start}: is a quote left open there?)",
                    line=start,
                )
            if "end of data" in str(exc):
                # The file ended inside a quoted value: say where that record starts.
                return IngestError(
                    path,
                    f"unterminated quote: the quoted value in the row starting at line {start} "
                    "is never closed",
                    line=start,
                )
            return IngestError(path, f"malformed CSV: {exc}", line=reader.line_num)
    return IngestError(path, f"cannot parse CSV: {arrow_message}")


class _QuoteCounter(io.RawIOBase):
    """Passes bytes through, counting double quotes: a valid CSV has an even number."""

    def __init__(self, raw: ByteSource) -> None:
        self._raw = raw
        self.quotes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.quotes += data.count(b'"')
        return n


# --- JSON Lines ------------------------------------------------------------------------------


def _read_jsonl(
    path: Path, file_format: FileFormat, contract: InputContract, stream: ByteSource | None
) -> Iterator[RawBatch]:
    seen_columns: set[str] = set()
    with _decompressed(path, file_format.gzip, stream) as decompressed:
        buffered = io.BufferedReader(cast(Any, decompressed), 1 << 20)
        try:
            yield from _parse_jsonl(path, contract, buffered, seen_columns)
        finally:
            buffered.detach()  # leave the underlying stream to its owner
    missing = [c for c in contract.required if c not in seen_columns]
    if missing and seen_columns:
        others = sorted(seen_columns - set(contract.columns))[:10]
        raise IngestError(
            path,
            f"no line has the required field{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))}"
            + (f" (the lines have: {', '.join(others)})" if others else ""),
            column=missing[0],
        )


def _parse_jsonl(
    path: Path, contract: InputContract, lines_in: ByteSource, seen_columns: set[str]
) -> Iterator[RawBatch]:
    wanted = contract.columns
    columns: dict[str, list[str | None]] = {name: [] for name in wanted}
    lines: list[int] = []
    problems: list[tuple[int, str, str, str | None]] = []
    for line_number, raw_line in enumerate(lines_in, start=1):
        row_index = len(lines)
        lines.append(line_number)
        if not raw_line.strip():
            for name in wanted:
                columns[name].append(None)
            continue
        try:
            record = orjson.loads(raw_line)
        except orjson.JSONDecodeError as exc:
            raise IngestError(
                path, f"invalid JSON: {exc.msg}", line=line_number, column=exc.colno
            ) from exc
        if not isinstance(record, dict):
            raise IngestError(
                path, f"expected a JSON object, found {type(record).__name__}", line=line_number
            )
        seen_columns.update(record)
        if not any(name in record for name in wanted):
            # Not a blank line: an object whose keys are all misspelled (or none at all).
            found = ", ".join(list(record)[:10]) or "no fields"
            reason = f"none of the contract's fields (found: {found})"
            problems.append((row_index, contract.required[0], reason, raw_line.decode().strip()))
        for name in wanted:
            value, problem = _json_scalar(name, record.get(name))
            columns[name].append(value)
            if problem:
                problems.append((row_index, name, problem, value))
        if len(lines) >= JSONL_BATCH_ROWS:
            yield _jsonl_batch(columns, lines, problems)
            columns = {name: [] for name in wanted}
            lines, problems = [], []
    if lines:
        yield _jsonl_batch(columns, lines, problems)


def _json_scalar(name: str, value: Any) -> tuple[str | None, str | None]:
    """A JSON value as text for validation, and a problem if it cannot be one."""
    if value is None or isinstance(value, str):
        return value, None
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    if isinstance(value, int | float):
        return repr(value), None
    text = orjson.dumps(value).decode()
    if name == "attributes":
        return text, None
    return text, f"expected a string or number, found a JSON {type(value).__name__}"


def _jsonl_batch(
    columns: dict[str, list[str | None]],
    lines: list[int],
    problems: list[tuple[int, str, str, str | None]],
) -> RawBatch:
    table = pa.table({name: pa.array(values, type=pa.string()) for name, values in columns.items()})
    return RawBatch(table, np.asarray(lines, dtype=np.int64), problems)


# --- Parquet ---------------------------------------------------------------------------------


def _read_parquet(
    path: Path, file_format: FileFormat, contract: InputContract, stream: ByteSource | None
) -> Iterator[RawBatch]:
    with tempfile.TemporaryDirectory() as scratch:
        source: Any = path
        if file_format.gzip:
            # Parquet needs random access (its footer is at the end): inflate to a scratch file.
            source = Path(scratch) / path.stem
            with open_text_bytes(path, True, stream) as inflated, source.open("wb") as out:
                shutil.copyfileobj(inflated, out, 8 << 20)
        elif stream is not None:
            shutil.copyfileobj(stream, _Discard(), 8 << 20)  # feed the hash; Arrow reads the path
        try:
            parquet = pq.ParquetFile(source)
        except (pa.ArrowInvalid, OSError) as exc:
            raise IngestError(path, f"not a readable Parquet file: {exc}") from exc
        schema = parquet.schema_arrow
        check_columns(path, schema.names, contract, header_line=None)  # no header line
        present = [c for c in contract.columns if c in schema.names]
        for name in present:
            check_parquet_type(path, name, schema.field(name).type)
        next_row = 1
        try:
            for record_batch in parquet.iter_batches(batch_size=JSONL_BATCH_ROWS, columns=present):
                n = record_batch.num_rows
                lines = np.arange(next_row, next_row + n, dtype=np.int64)
                table = _plain_columns(path, pa.Table.from_batches([record_batch]), next_row)
                next_row += n
                yield RawBatch(table, lines)
        except (pa.ArrowInvalid, OSError) as exc:
            raise IngestError(
                path, f"corrupt Parquet data near row {next_row}: {exc}", line=next_row
            ) from exc


def _is_text(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary_view(t)
    )


def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def check_parquet_type(path: Path, name: str, column_type: pa.DataType) -> None:
    """Refuse a Parquet column whose type cannot hold the contract's values.

    The value type of a dictionary-encoded column is what counts: it is decoded as it is read.
    """
    t = column_type.value_type if pa.types.is_dictionary(column_type) else column_type
    if name == "timestamp":
        ok = (
            pa.types.is_timestamp(t)
            or pa.types.is_date(t)
            or pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or _is_text(t)
            or pa.types.is_null(t)
        )
        expected = "a timestamp, a date, epoch milliseconds (integer) or ISO-8601 text"
    elif name == "attributes":
        ok = pa.types.is_struct(t) or pa.types.is_map(t) or _is_text(t) or pa.types.is_null(t)
        expected = "a struct, a map or JSON text"
    elif name in ("latency_ms", "feedback"):
        ok = _is_number(t) or _is_text(t) or pa.types.is_null(t)
        expected = "a number or text"
    elif name in ("complaint", "retry"):
        ok = pa.types.is_boolean(t) or _is_number(t) or _is_text(t) or pa.types.is_null(t)
        expected = "a boolean, 0/1 or text"
    else:
        ok = _is_text(t) or pa.types.is_integer(t) or pa.types.is_null(t)
        expected = "text (or an integer)"
    if not ok:
        raise IngestError(
            path,
            f"column {name!r} has Parquet type {column_type}; expected {expected}",
            column=name,
        )


def _plain_columns(path: Path, table: pa.Table, first_row: int) -> pa.Table:
    """Decode dictionaries, check binary text is UTF-8, turn decimals into floats and all-null
    columns into text."""
    for index, name in enumerate(table.column_names):
        column = table.column(index)
        original = column.type
        if pa.types.is_dictionary(column.type):
            column = pa.chunked_array(
                [c.dictionary_decode() for c in column.chunks], type=column.type.value_type
            )
        if pa.types.is_decimal(column.type):
            column = pc.cast(column, pa.float64())
        elif pa.types.is_null(column.type):  # a column with no value at all: read as text
            column = column.cast(pa.string())
        elif _is_text(column.type) and not pa.types.is_string(column.type):
            try:
                column = pc.cast(column, pa.string())
            except pa.ArrowInvalid as exc:
                row = first_row + _first_invalid_utf8(column)
                raise IngestError(
                    path, f"invalid UTF-8 in binary column {name!r}", line=row, column=name
                ) from exc
        if column.type != original:
            table = table.set_column(index, name, column)
    return table


def _first_invalid_utf8(column: pa.ChunkedArray) -> int:
    for row, value in enumerate(column.to_pylist()):
        if isinstance(value, bytes):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return row
    return 0


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)
