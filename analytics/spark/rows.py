"""Rows checked and featured on Spark's executors, by ingest's own code.

Each Arrow batch Spark hands over goes through :func:`analytics.ingest.validate.check_batch`
(the contract's checks: identifiers trimmed, timestamps to UTC microseconds, epoch
milliseconds, flags, ranges) and, for interactions, :func:`analytics.ingest.runner.with_features`
(:func:`analytics.features.compute_interaction_features`): exactly what ``aftershock ingest``
stores, row for row. A row ingest would reject is dropped. What leaves is narrow: the
identifiers, the instant as epoch microseconds and the analysed columns, never the text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analytics.ingest.contract import EXPOSURES, INTERACTIONS, InputContract
from analytics.ingest.readers import RawBatch
from analytics.ingest.validate import TimestampRange, check_batch
from analytics.models import IngestKind

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# What leaves the executors' Python workers, in Arrow and in Spark's DDL.
INTERACTION_ROWS = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("timestamp_us", pa.int64()),
        ("latency_ms", pa.float64()),
        ("feedback", pa.int16()),
        ("complaint", pa.bool_()),
        ("retry", pa.bool_()),
        ("prompt_length", pa.int32()),
        ("response_length", pa.int32()),
        ("has_agreement", pa.bool_()),
        ("has_refusal", pa.bool_()),
        ("has_hedge", pa.bool_()),
        ("has_pushback", pa.bool_()),
        ("has_constraint", pa.bool_()),
        ("has_politeness", pa.bool_()),
        ("has_question", pa.bool_()),
        ("has_code_block", pa.bool_()),
    ]
)
EXPOSURE_ROWS = pa.schema(
    [
        ("user_id", pa.string()),
        ("experiment_id", pa.string()),
        ("variation_id", pa.string()),
        ("timestamp_us", pa.int64()),
    ]
)
_DDL = {
    pa.string(): "string",
    pa.int64(): "bigint",
    pa.float64(): "double",
    pa.int16(): "smallint",
    pa.int32(): "int",
    pa.bool_(): "boolean",
}


def ddl(schema: pa.Schema) -> str:
    """``schema`` as Spark's DDL (``user_id string, ...``)."""
    return ", ".join(f"{field.name} {_DDL[field.type]}" for field in schema)


def checked_rows(frame: DataFrame, contract: InputContract, span: TimestampRange) -> DataFrame:
    """The rows of ``frame`` (a source's contract columns) that ingest would store, checked and,
    for interactions, featured on the executors: :data:`INTERACTION_ROWS` or
    :data:`EXPOSURE_ROWS`."""
    schema = INTERACTION_ROWS if contract.kind is IngestKind.interactions else EXPOSURE_ROWS

    def check(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            table = check_table(pa.Table.from_batches([batch]), contract, span)
            yield from table.to_batches()

    return frame.mapInArrow(check, ddl(schema))


def check_table(table: pa.Table, contract: InputContract, span: TimestampRange) -> pa.Table:
    """One batch through ingest's checks (and features): the stored rows, narrowed."""
    from analytics.ingest.runner import with_features

    lines = np.arange(1, table.num_rows + 1, dtype=np.int64)  # rejects are not reported here
    checked = check_batch(RawBatch(table, lines), contract, span).table
    if contract.kind is IngestKind.interactions:
        checked = with_features(checked)
        schema = INTERACTION_ROWS
    else:
        schema = EXPOSURE_ROWS
    columns = []
    for field in schema:
        if field.name == "timestamp_us":
            column = pc.cast(checked.column("timestamp"), pa.int64())  # naive UTC, microseconds
        else:
            column = checked.column(field.name).cast(field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


__all__ = ["EXPOSURES", "EXPOSURE_ROWS", "INTERACTIONS", "INTERACTION_ROWS", "checked_rows", "ddl"]
