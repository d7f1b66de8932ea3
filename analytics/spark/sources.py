"""Where the exposures and interactions come from: a file or folder (Parquet, JSON Lines, CSV,
ORC, a Delta table's folder), a URL Spark can read (``s3a://...``, ``hdfs://...``) or a table
of the session's catalog.

``resolve_source`` decides what a source is before Spark starts (a missing path is one clear
error, not a Spark stack trace); ``read_source`` reads it with the options that make Spark read
what ingest reads (CSV: a header row, RFC 4180 quotes, values spanning lines; JSON Lines: every
scalar as text, as ingest's reader passes it on), checks the contract's columns and their types
with ingest's own checks, and keeps only the contract's columns.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from analytics.errors import ConfigError, IngestError, NotFoundError
from analytics.ingest.contract import InputContract
from analytics.ingest.readers import check_parquet_type

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

FORMATS = ("parquet", "csv", "jsonl", "orc", "delta", "table")
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".orc": "orc",
}
_TABLE_NAME = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*){0,2}")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class Source:
    """A path, URL or table name, and how to read it (one of :data:`FORMATS`)."""

    location: str
    format: str

    def describe(self) -> str:
        return f"table {self.location}" if self.format == "table" else self.location


def format_of_name(name: str) -> str | None:
    """The format a file or folder name says (``logs.csv.gz`` is CSV), or None."""
    lowered = name.lower().rstrip("/")
    for compression in (".gz", ".bz2", ".zst", ".snappy"):
        lowered = lowered.removesuffix(compression)
    return _SUFFIXES.get(os.path.splitext(lowered)[1])


def _format_of_folder(folder: Path) -> str | None:
    """A Delta table (``_delta_log``), else the format of the first data file inside (a
    partitioned data set's ``key=value`` folders included; Spark's ``_SUCCESS`` and hidden
    files are not data)."""
    if (folder / "_delta_log").is_dir():
        return "delta"
    for _root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        for name in sorted(files):
            if not name.startswith(("_", ".")) and not name.endswith(".crc"):
                return format_of_name(name)
    return None


def resolve_source(text: str, file_format: str | None = None) -> Source:
    """What ``text`` names, read as ``file_format`` when given (else from its name, a folder's
    files, or as a table name when nothing by that name exists). Refuses an unknown format
    (:class:`ConfigError`) and a local path that does not exist (:class:`NotFoundError`)."""
    fmt = None if file_format is None else file_format.strip().lower()
    if fmt == "json":
        fmt = "jsonl"
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"--format {file_format!r}: use one of {', '.join(FORMATS)}")
    if fmt == "table":
        return Source(text, "table")
    if _URL.match(text):  # read by Spark: the file system is the cluster's, not this machine's
        fmt = fmt or format_of_name(text)
        if fmt is None:
            raise ConfigError(
                f"{text}: cannot tell the format from the name; pass --format "
                "(parquet, csv, jsonl, orc, delta)"
            )
        return Source(text, fmt)
    path = Path(text)
    if not path.exists():
        if fmt is None and format_of_name(text) is None and _TABLE_NAME.fullmatch(text):
            return Source(text, "table")
        raise NotFoundError(f"{text}: no such file or folder")
    if fmt is None:
        fmt = _format_of_folder(path) if path.is_dir() else format_of_name(path.name)
    if fmt is None:
        what = "no data file inside" if path.is_dir() else "unknown suffix"
        raise ConfigError(
            f"{text}: cannot tell the format ({what}); pass --format (parquet, csv, jsonl, "
            "orc, delta)"
        )
    return Source(str(path), fmt)


def read_source(spark: SparkSession, source: Source, contract: InputContract) -> DataFrame:
    """The contract's columns of ``source``, as Spark reads them: required columns present and
    every column of a type ingest accepts (else :class:`IngestError`, naming the column),
    decimals as doubles, ``attributes`` kept only as text (a struct or map is an object)."""
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as sf
    from pyspark.sql import types as st
    from pyspark.sql.pandas.types import to_arrow_type

    try:
        frame = _reader(spark, source)
    except PySparkException as exc:
        raise IngestError(source.describe(), _first_line(exc)) from exc
    present = set(frame.columns)
    for name in contract.required:
        if name not in present:
            raise IngestError(source.describe(), f"missing required column {name!r}", column=name)
    columns = []
    for name in contract.columns:
        if name not in present:
            continue
        spark_type = frame.schema[name].dataType
        try:
            arrow_type = to_arrow_type(spark_type, timezone="UTC")
        except Exception as exc:  # a type Arrow has no form for (an interval, say)
            raise IngestError(
                source.describe(), f"column {name!r} has type {spark_type.simpleString()}"
            ) from exc
        try:
            check_parquet_type(Path(name), name, arrow_type)
        except IngestError as exc:  # ingest's check, naming the source (a URL is no Path)
            raise IngestError(source.describe(), exc.message, column=name) from None
        column = sf.col(name)
        if isinstance(spark_type, st.DecimalType):
            column = column.cast("double")
        elif isinstance(spark_type, st.NullType):
            column = column.cast("string")
        elif name == "attributes" and isinstance(spark_type, st.StructType | st.MapType):
            continue  # always an object (or null): nothing for validation to refuse
        columns.append(column.alias(name))
    return frame.select(*columns)


def _reader(spark: SparkSession, source: Source) -> DataFrame:
    if source.format == "table":
        if not spark.catalog.tableExists(source.location):
            raise NotFoundError(f"{source.location}: no such file, folder or table")
        return spark.read.table(source.location)
    reader = spark.read
    if source.format == "csv":
        # Every value as text (ingest's CSV reader does the same, then validates the text).
        return reader.options(
            header=True, multiLine=True, escape='"', encoding="UTF-8", inferSchema=False
        ).csv(source.location)
    if source.format == "jsonl":
        return reader.option("primitivesAsString", True).json(source.location)
    if source.format == "parquet":
        return reader.parquet(source.location)
    return reader.format(source.format).load(source.location)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
