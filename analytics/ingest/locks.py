"""One ingest per file at a time, across processes and hosts.

Two ingests of the same file must not both resume the same unfinished run. The lock dies
with its holder (an advisory lock on the PostgreSQL session, an ``flock`` on SQLite), so a
killed ingest never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from analytics.errors import IngestError
from analytics.settings import sqlite_file


@contextmanager
def exclusive_ingest(engine: sa.Engine, sha256: str, path: Path) -> Iterator[None]:
    """Hold the lock for ingesting the file with this SHA-256, or refuse if it is taken."""
    busy = IngestError(path, "another ingest of this file is running; try again when it ends")
    if engine.dialect.name == "postgresql":
        key = int(sha256[:15], 16)  # fits a signed 64-bit advisory lock key
        with engine.connect() as connection:
            taken = connection.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
            if not taken.scalar_one():
                raise busy
            connection.commit()
            try:
                yield
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                connection.commit()
        return
    database = sqlite_file(engine.url.render_as_string(hide_password=False))
    if database is None:  # in-memory: one process only
        yield
        return
    lock_dir = database.parent / ".aftershock-locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / f"{database.name}.{sha256[:16]}.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise busy from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
