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

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

import pyarrow as pa

# The schema name a chunk file is attached under, and its one table.
SCHEMA = "chunk"
TABLE = "rows"
# Scratch directories are named PREFIX<pid>-<random>, in the system's temporary directory.
PREFIX = "aftershock-ingest-"
# A killed ingest's directory is removed by a later ingest once it has not changed for this
# long and its process is gone (a live ingest touches its directory with every chunk).
ORPHAN_AFTER_SECONDS = 600

_names = count()


@contextmanager
def scratch_directory() -> Iterator[Path]:
    """A new directory for one ingest's chunk files, removed with them when the ingest ends.

    An ingest killed outright (SIGKILL, power loss) cannot remove its own; the next ingest on
    the machine removes those it finds orphaned first.
    """
    root = Path(tempfile.gettempdir())
    remove_orphans(root)
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-", dir=root) as name:
        yield Path(name)


def remove_orphans(root: Path, now: float | None = None) -> list[Path]:
    """Remove the scratch directories in ``root`` whose ingest is gone; return them."""
    now = time.time() if now is None else now
    removed = []
    for path in root.glob(f"{PREFIX}*-*"):
        pid = path.name[len(PREFIX) :].split("-", 1)[0]
        try:
            stale = now - path.stat().st_mtime > ORPHAN_AFTER_SECONDS
        except FileNotFoundError:
            continue
        if pid.isdigit() and stale and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
