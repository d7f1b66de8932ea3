"""Bulk writes of validated rows: a merged chunk file on SQLite, COPY on PostgreSQL.

Writing is split in two so that the expensive half can run on another thread while the
previous chunk is written: :func:`prepare_rows` turns an Arrow table into what the database
takes (a SQLite file written by ADBC, :mod:`analytics.ingest.sqlite_chunks`; CSV bytes for
PostgreSQL's COPY); :func:`write_prepared` sends it, inside :func:`ready_to_write`. Both skip
rows whose key is already stored (idempotency) and report how many were new; neither builds a
Python object per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from analytics.ingest import sqlite_chunks
from analytics.ingest.contract import InputContract
from analytics.models import Exposure, IngestKind, Interaction

TABLES = {
    IngestKind.exposures: Exposure.__tablename__,
    IngestKind.interactions: Interaction.__tablename__,
}
_CONFLICT_TARGETS = {
    IngestKind.exposures: "experiment_id, user_id, timestamp, variation_id",
    IngestKind.interactions: "event_id",
}
# The same order as Arrow's sort in prepare_rows: text compared byte by byte (collation "C").
_KEY_ORDER = {
    IngestKind.exposures: 'experiment_id COLLATE "C", user_id COLLATE "C", timestamp, '
    'variation_id COLLATE "C"',
    IngestKind.interactions: 'event_id COLLATE "C"',
}


# The leading columns of the index a chunk's SQLite inserts cost the most in: the covering
# index of interactions (ix_interactions_user_time_metrics), the primary key of exposures.
_SQLITE_ORDER = {
    IngestKind.exposures: ("experiment_id", "user_id", "timestamp", "variation_id"),
    IngestKind.interactions: ("user_id", "timestamp"),
}


@dataclass(frozen=True)
class PreparedRows:
    table: str
    conflict_target: str
    key_order: str
    columns: list[str]
    rows: int
    payload: Any  # the chunk's file (SQLite) or CSV (PostgreSQL)
    ingest_run_id: int


def drop_repeated_keys(table: pa.Table, contract: InputContract) -> tuple[pa.Table, np.ndarray]:
    """Keep the first row of each key within the batch (later ones are duplicates); return the
    rows kept and their indices in ``table``."""
    everything = np.arange(table.num_rows, dtype=np.int64)
    if table.num_rows < 2:
        return table, everything
    keyed = table.select(list(contract.key)).append_column(
        "__row", pa.array(range(table.num_rows), type=pa.int64())
    )
    first = keyed.group_by(list(contract.key), use_threads=False).aggregate([("__row", "min")])
    if first.num_rows == table.num_rows:
        return table, everything
    keep = np.sort(first.column("__row_min").to_numpy())
    return table.take(pa.array(keep)), keep


def prepare_rows(
    dialect: str,
    contract: InputContract,
    table: pa.Table,
    ingest_run_id: int,
    scratch: Path | None = None,
) -> PreparedRows:
    """Convert key-unique rows to the database's bulk format; SQLite's chunk file is written in
    the directory ``scratch``."""
    payload: Any
    if dialect == "sqlite" and table.num_rows == 0:
        payload = None
    elif dialect == "sqlite":
        if scratch is None:
            raise ValueError("a SQLite chunk is written to a file: give a scratch directory")
        # In the order of the table's widest index, so that the chunk's inserts into it land
        # next to each other instead of all over it (on 1M interactions, 13.3-14.6 s against
        # 15.4-16.2 s in file order when rows were bound one by one). Keys are unique within a
        # chunk (drop_repeated_keys), so the order changes no outcome.
        table = table.sort_by([(name, "ascending") for name in _SQLITE_ORDER[contract.kind]])
        # SQLite keeps instants as epoch microseconds (analytics.sqltypes.UtcTimestamp).
        index = table.schema.get_field_index("timestamp")
        table = table.set_column(index, "timestamp", pc.cast(table.column(index), pa.int64()))
        # Columns empty in every row are left to their NULL default (Arrow gives them no type
        # a SQLite column can take).
        table = table.select(
            [c for c in table.column_names if table.column(c).null_count < len(table)]
        )
        payload = sqlite_chunks.write_chunk_file(table, scratch)
    else:
        # Every writer inserts in key order, so two ingests of overlapping rows take the key
        # locks in the same order and wait for each other instead of deadlocking.
        table = table.sort_by([(name, "ascending") for name in contract.key])
        table = table.append_column(
            "ingest_run_id", pa.array(np.full(table.num_rows, ingest_run_id, dtype=np.int64))
        )
        payload = _csv_bytes(table)
    return PreparedRows(
        table=TABLES[contract.kind],
        conflict_target=_CONFLICT_TARGETS[contract.kind],
        key_order=_KEY_ORDER[contract.kind],
        columns=table.column_names,
        rows=table.num_rows,
        payload=payload,
        ingest_run_id=ingest_run_id,
    )


def _csv_bytes(table: pa.Table) -> memoryview:
    """The rows as CSV, in an Arrow buffer (handed back to Arrow's pool when written)."""
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, write_options=pa_csv.WriteOptions(include_header=False))
    return memoryview(sink.getvalue())


@contextmanager
def ready_to_write(connection: sa.Connection, prepared: PreparedRows) -> Iterator[None]:
    """Around the transaction that writes ``prepared``: SQLite's chunk file attached to the
    connection (and deleted after); nothing on PostgreSQL."""
    if connection.dialect.name != "sqlite" or prepared.rows == 0:
        yield
        return
    with sqlite_chunks.attached(connection.connection.driver_connection, prepared.payload):
        yield


def write_prepared(connection: sa.Connection, prepared: PreparedRows) -> int:
    """Insert the prepared rows in the connection's transaction; return how many were new."""
    if prepared.rows == 0:
        return 0
    driver: Any = connection.connection.driver_connection
    if connection.dialect.name == "sqlite":
        return _write_sqlite(driver, prepared)
    return _write_postgres(driver, prepared)


def _write_sqlite(driver: Any, prepared: PreparedRows) -> int:
    cursor = driver.cursor()
    cursor.execute(
        sqlite_chunks.merge_sql(prepared.table, prepared.columns, prepared.ingest_run_id)
    )
    return int(cursor.rowcount)


def _write_postgres(driver: Any, prepared: PreparedRows) -> int:
    from psycopg.errors import UniqueViolation

    target, columns = prepared.table, ", ".join(prepared.columns)
    with driver.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'UTC'")  # the CSV holds naive UTC instants
        # Safe without the flush wait: a chunk's rows and its run checkpoint commit together,
        # so a crash loses both, and the resumed run writes them again.
        cursor.execute("SET LOCAL synchronous_commit = off")
        # Fresh data is the common case: COPY straight into the table inside a savepoint. If a
        # key is already stored the COPY fails as a whole and the batch takes the slower path
        # through a staging table with ON CONFLICT DO NOTHING.
        try:
            with (
                driver.transaction(),
                cursor.copy(f"COPY {target} ({columns}) FROM STDIN (FORMAT csv)") as copy,
            ):
                copy.write(prepared.payload)
            return prepared.rows
        except UniqueViolation:
            pass
        staging = f"staging_{target}"
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM {target} WITH NO DATA"
        )
        cursor.execute(f"TRUNCATE {staging}")
        with cursor.copy(f"COPY {staging} ({columns}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(prepared.payload)
        cursor.execute(
            f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging} "
            f"ORDER BY {prepared.key_order} ON CONFLICT ({prepared.conflict_target}) DO NOTHING"
        )
        return int(cursor.rowcount)
