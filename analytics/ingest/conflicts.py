"""Duplicates whose content differs: within a chunk, and against what is already stored.

A row whose key was seen before is a duplicate and is not stored again. When its content
differs from the first write, it is a *conflict*: the first write is kept and the row goes to
the rejects, naming the columns that differ. Every stored row carries a 64-bit digest of its
content (:func:`content_digests`), so a re-ingest compares 8 bytes per row instead of reading
the prompts and responses back; only the few rows whose digests differ, and rows stored before
digests existed (``content_digest`` NULL), are read whole to name the columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from analytics.ingest.contract import InputContract
from analytics.ingest.retention import TEXT_COLUMNS
from analytics.models import Exposure, IngestKind, Interaction

DIGEST_COLUMN = "content_digest"
_LOOKUP_ROWS = 1_000  # keys per SELECT (4 bound values each for exposures)
_TABLES = {IngestKind.exposures: Exposure, IngestKind.interactions: Interaction}


@dataclass(frozen=True)
class Conflict:
    """A row whose key was seen before with different content; the first write is kept."""

    index: int  # the row in the table it came from
    key: str
    differs: list[str]

    def reason(self, contract: InputContract) -> str:
        return (
            f"conflicting duplicate: {' '.join(contract.key)} {self.key} was already seen with a "
            f"different {', '.join(self.differs)}; the first write is kept"
        )


def content_columns(contract: InputContract) -> list[str]:
    return [c for c in contract.columns if c not in contract.key]


def content_digests(table: pa.Table, contract: InputContract) -> pa.Array:
    """A 64-bit digest of each row's content columns (every contract column but the key).

    :func:`pandas.util.hash_pandas_object` hashes each column (SipHash-2-4 with pandas' fixed
    key, so the same value always gives the same hash) and combines a row's hashes. The input
    is the validated table, whose types the contract fixes, so a row gives the same digest from
    CSV, JSON Lines or Parquet; instants are hashed as epoch microseconds and numbers and flags
    as floats. Text goes in as the UTF-8 bytes of each value (:func:`_text_as_bytes`), which
    pandas hashes exactly as it hashes the text itself. tests/test_ingest_conflicts.py pins the
    digests of known rows: a pandas release that changed the hash would fail there rather than
    report every stored row as a conflict.

    Rows are hashed :data:`_DIGEST_SLICE_ROWS` at a time, so that only one slice's Python
    objects are alive at once.
    """
    digests = np.empty(table.num_rows, dtype=np.uint64)
    for start in range(0, table.num_rows, _DIGEST_SLICE_ROWS):
        part = table.slice(start, _DIGEST_SLICE_ROWS)
        frame = pd.DataFrame(
            {name: _hashable(part.column(name)) for name in content_columns(contract)}
        )
        hashed = pd.util.hash_pandas_object(frame, index=False, categorize=False)
        digests[start : start + part.num_rows] = hashed.to_numpy(dtype=np.uint64)
    return pa.array(digests.view(np.int64), type=pa.int64())


_DIGEST_SLICE_ROWS = 8192


def _hashable(column: pa.ChunkedArray) -> pd.Series:
    if pa.types.is_string(column.type):
        as_bytes = _text_as_bytes(column)
        if as_bytes is not None:
            return pd.Series(as_bytes, dtype=object, copy=False)
        return pd.Series(pd.arrays.ArrowExtensionArray(column))
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    else:
        column = column.cast(pa.float64())
    return pd.Series(pd.arrays.ArrowExtensionArray(column))


# How pandas hashes a missing text value: as the text "<NA>" (an Arrow-backed string column
# with a null goes through ``astype(str)``). Checked once against pandas itself below.
_NULL_TEXT = b"<NA>"


def _text_as_bytes(column: pa.ChunkedArray) -> np.ndarray | None:
    """Each value's UTF-8 bytes (a null as pandas hashes it), or None when only pandas' own
    path gives the same hashes.

    pandas hashes an Arrow-backed text column by making a Python string of every value and
    encoding it back to UTF-8; when the column holds a null, it first copies the column into a
    fixed-width numpy array as wide as its longest value (gigabytes for a chunk with one long
    response). Bytes objects straight from Arrow's buffers hash the same, at a fraction of the
    time and memory. The one difference, that numpy's fixed-width copy drops a value's trailing
    NUL characters, cannot arise after validation (NUL is rejected); a column with a NUL still
    takes pandas' path, so the digest is the same for any input.
    """
    if not _NULL_TEXT_MATCHES_PANDAS:
        return None
    if column.null_count and pc.any(pc.match_substring(column, "\x00")).as_py():
        return None
    values: np.ndarray = column.cast(pa.binary()).to_numpy(zero_copy_only=False)
    if column.null_count:
        values[column.is_null().to_numpy(zero_copy_only=False)] = _NULL_TEXT
    return values


def _null_text_matches_pandas() -> bool:
    reference = pd.util.hash_pandas_object(
        pd.Series(pd.arrays.ArrowExtensionArray(pa.chunked_array([pa.array(["a", None])]))),
        index=False,
        categorize=False,
    )
    ours = pd.util.hash_array(np.array([b"a", _NULL_TEXT], dtype=object), categorize=False)
    return bool((reference.to_numpy(dtype=np.uint64) == ours).all())


_NULL_TEXT_MATCHES_PANDAS = _null_text_matches_pandas()


def find_repeated_conflicts(
    table: pa.Table, keep: np.ndarray, contract: InputContract
) -> list[Conflict]:
    """The rows dropped as repeating a key earlier in the table whose content differs from the
    kept row (``keep``: the indices of the first row of each key)."""
    if len(keep) == table.num_rows:
        return []
    dropped = np.setdiff1d(np.arange(table.num_rows), keep)
    columns = list(contract.key) + content_columns(contract)
    rows = table.select(columns).to_pylist()
    first: dict[tuple[Any, ...], dict[str, Any]] = {}
    for index in keep.tolist():
        first[tuple(rows[index][k] for k in contract.key)] = rows[index]
    conflicts = []
    for index in dropped.tolist():
        row = rows[index]
        key = tuple(row[k] for k in contract.key)
        differs = _differing(row, first[key], contract)
        if differs:
            conflicts.append(Conflict(index, _shown(key), differs))
    return conflicts


def find_stored_conflicts(
    connection: sa.Connection, table: pa.Table, contract: InputContract
) -> list[Conflict]:
    """Rows of ``table`` (contract columns and ``content_digest``) whose key is stored with
    different content. Rows written earlier in the same transaction compare equal."""
    if table.num_rows == 0:
        return []
    keys = [_key(row, contract) for row in table.select(list(contract.key)).to_pylist()]
    digests = table.column(DIGEST_COLUMN).to_pylist()
    stored = dict(_stored_digests(connection, keys, contract))
    suspects = [
        i for i, key in enumerate(keys) if key in stored and stored[key] != digests[i]
    ]  # a different digest, or none stored (rows written before digests existed)
    if not suspects:
        return []
    full = dict(_stored_rows(connection, [keys[i] for i in suspects], contract))
    rows = table.select(list(contract.columns)).take(pa.array(suspects)).to_pylist()
    conflicts = []
    for index, row in zip(suspects, rows, strict=True):
        before = full[keys[index]]
        if stored[keys[index]] is None:  # stored before digests: compared whole
            differs = _differing(_as_stored(row), before, contract)
        else:  # the digests differ; text a retention mode did not keep cannot say where
            unkept = {c for c in TEXT_COLUMNS if c in before and before[c] is None}
            known = _differing(_as_stored(row), before, contract, skip=unkept)
            differs = known or (
                [" or ".join(sorted(unkept)) + " (its text is not stored)"] if unkept else []
            )
        if differs:
            conflicts.append(Conflict(index, _shown(keys[index]), differs))
    return conflicts


def _differing(
    row: dict[str, Any],
    first: dict[str, Any],
    contract: InputContract,
    skip: frozenset[str] | set[str] = frozenset(),
) -> list[str]:
    return [c for c in content_columns(contract) if c not in skip and row[c] != first[c]]


def _shown(key: tuple[Any, ...]) -> str:
    """A key as the rejects file shows it: instants in ISO 8601 UTC."""
    return " ".join(
        _as_utc(v).isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else str(v)
        for v in key
    )


def _key(row: dict[str, Any], contract: InputContract) -> tuple[Any, ...]:
    return tuple(_as_utc(row[k]) for k in contract.key)


def _as_utc(value: Any) -> Any:
    """Arrow gives naive UTC datetimes and the database aware ones: compare them as aware."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _as_stored(row: dict[str, Any]) -> dict[str, Any]:
    """An incoming row as the database gives it back: aware timestamps, attributes parsed."""
    out = {name: _as_utc(value) for name, value in row.items()}
    if isinstance(out.get("attributes"), str):
        out["attributes"] = orjson.loads(out["attributes"])
    return out


def _lookups(
    keys: Sequence[tuple[Any, ...]], contract: InputContract, columns: list[str]
) -> Iterator[sa.Select[Any]]:
    """SELECTs of ``columns`` for the stored rows with these keys, a thousand keys each."""
    stored = _TABLES[contract.kind].__table__  # type: ignore[attr-defined]
    key_columns = [stored.c[k] for k in contract.key]
    for start in range(0, len(keys), _LOOKUP_ROWS):
        part = list(dict.fromkeys(keys[start : start + _LOOKUP_ROWS]))
        where = (
            key_columns[0].in_([k[0] for k in part])
            if len(key_columns) == 1
            else sa.tuple_(*key_columns).in_(part)
        )
        yield sa.select(*key_columns, *(stored.c[c] for c in columns)).where(where)


def _stored_digests(
    connection: sa.Connection, keys: Sequence[tuple[Any, ...]], contract: InputContract
) -> Iterator[tuple[tuple[Any, ...], int | None]]:
    width = len(contract.key)
    for query in _lookups(keys, contract, [DIGEST_COLUMN]):
        for record in connection.execute(query):
            yield tuple(record[:width]), record[width]


def _stored_rows(
    connection: sa.Connection, keys: Sequence[tuple[Any, ...]], contract: InputContract
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    columns = content_columns(contract)
    for query in _lookups(keys, contract, columns):
        for record in connection.execute(query).mappings():
            yield tuple(record[k] for k in contract.key), dict(record)
