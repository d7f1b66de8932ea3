"""Fresh planner statistics after a large ingest into PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from analytics.ingest.writers import TABLES
from analytics.models import IngestKind

# Autovacuum's rule for refreshing a table's statistics: a tenth of its rows changed.
_STALE_SHARE = 0.1


def refresh_statistics(engine: sa.Engine, kind: IngestKind, inserted: int) -> None:
    """After an ingest that added at least a tenth of a PostgreSQL table's rows, refresh the
    table's statistics now (``ANALYZE`` reads a sample of 30,000 rows: a fraction of a
    second) rather than when autovacuum gets to it, a minute or more later. An analysis run
    meanwhile would be planned for the table as it was: on the benchmark's freshly loaded
    exposures, a join planned for an empty table took 45 s instead of 6."""
    if engine.dialect.name != "postgresql" or inserted <= 0:
        return
    table = TABLES[kind]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        known = connection.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"),
            {"t": table},
        ).scalar_one()
        if known < 0 or inserted >= _STALE_SHARE * known:  # -1: never analysed
            connection.exec_driver_sql(f"ANALYZE {table}")
