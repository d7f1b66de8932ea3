"""SQLite's bulk path: each chunk becomes a small database file written by ADBC straight from
Arrow, then merged into the main database by SQLite itself with one ``INSERT ... SELECT``.

Binding rows through Python's ``sqlite3`` costs a Python object per value: a million prepared
interactions took 9.9 s of one core to bind even into a table with no index at all, more than
the whole ingest budget. ADBC's SQLite driver writes the same Arrow columns to a fresh file in
under 2 s, and the merge then runs in SQLite's C code, which keeps the indexes up to date.

ADBC bundles its own copy of SQLite. Two copies of SQLite in one process must never have the
same file open: closing a file releases the process's POSIX locks on it, including the other
copy's (https://sqlite.org/howtocorrupt.html, "Multiple copies of SQLite linked into the same
application"). So the ADBC copy only ever opens a new chunk file of its own and closes it
before the main connection attaches it; it never opens the main database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

import pyarrow as pa

# The schema name a chunk file is attached under, and its one table.
SCHEMA = "chunk"
TABLE = "rows"

_names = count()


def write_chunk_file(table: pa.Table, directory: Path) -> Path:
    """Write ``table`` as the one table of a new SQLite file in ``directory``; return its path.

    The file is scratch: a crash loses it with the chunk's uncommitted rows, which the resumed
    ingest prepares again. So it is written without a journal or waits for the disk.
    """
    import adbc_driver_sqlite.dbapi as adbc

    path = directory / f"chunk-{next(_names):06d}.sqlite"
    # In autocommit mode: SQLite refuses to change these settings inside a transaction.
    with adbc.connect(str(path), autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=OFF")
        cursor.fetchall()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.adbc_ingest(TABLE, table, mode="create")
    return path


@contextmanager
def attached(driver: Any, path: Path) -> Iterator[None]:
    """``path`` attached to the ``sqlite3`` connection ``driver`` as :data:`SCHEMA`, outside any
    transaction (SQLite cannot detach a database a transaction has read); deleted after."""
    driver.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (str(path),))
    try:
        yield
    finally:
        driver.execute(f"DETACH DATABASE {SCHEMA}")
        path.unlink(missing_ok=True)


def merge_sql(target: str, columns: list[str], ingest_run_id: int) -> str:
    """The statement that copies an attached chunk's rows into ``target``, skipping keys
    already stored (idempotency); the run id, the same for every row, is a literal."""
    names = ", ".join(columns)
    return (
        f"INSERT OR IGNORE INTO main.{target} ({names}, ingest_run_id) "
        f"SELECT {names}, {int(ingest_run_id)} FROM {SCHEMA}.{TABLE}"
    )
