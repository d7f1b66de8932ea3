"""Stored instants outside the accepted range: found, refused, moved out.

Ingest rejects timestamps outside the configured range (:class:`TimestampRange`), but versions
before it stored them: an epoch in microseconds read as milliseconds lands in year 58,729,
which no later read can turn into a date. Analyses and plans check the rows they would read
and refuse with the remedy (:func:`require_in_range`); ``aftershock db check`` lists such rows
and ``--remove`` moves them to a CSV file and deletes them in one transaction
(:func:`remove_out_of_range`), so nothing is lost and every later command can read the
database.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from analytics.errors import AftershockError
from analytics.ingest.contract import CONTRACTS
from analytics.ingest.validate import TimestampRange
from analytics.models import Exposure, IngestKind, Interaction
from analytics.settings import Settings, get_settings
from analytics.sqltypes import UtcTimestamp

_TABLES = {IngestKind.exposures: Exposure, IngestKind.interactions: Interaction}
_EXAMPLES = 3


class OutOfRangeError(AftershockError):
    """Stored rows have timestamps no analysis can use (stored by an earlier version)."""


@dataclass(frozen=True)
class OutOfRange:
    """Stored rows of one kind whose timestamp is outside the range."""

    kind: IngestKind
    rows: int
    examples: list[str]  # the keys of a few of them

    def describe(self) -> str:
        noun = self.kind.value if self.rows != 1 else self.kind.value.removesuffix("s")
        return f"{self.rows:,} {noun} (e.g. {'; '.join(self.examples)})"


def accepted_range(settings: Settings | None = None) -> TimestampRange:
    """The range ingest accepts today, from the settings."""
    settings = settings or get_settings()
    return TimestampRange.ending_days_after(
        settings.timestamp_min, settings.timestamp_max_days_ahead
    )


def _outside(table: sa.Table, span: TimestampRange) -> sa.ColumnElement[bool]:
    column = table.c.timestamp
    earliest = sa.bindparam("earliest", span.earliest, type_=UtcTimestamp)
    latest = sa.bindparam("latest", span.latest, type_=UtcTimestamp)
    return sa.or_(column < earliest, column > latest)


def _scope(table: sa.Table, kind: IngestKind, experiment_id: str | None) -> sa.ColumnElement[bool]:
    if experiment_id is None:
        return sa.true()
    if kind is IngestKind.exposures:
        return table.c.experiment_id == experiment_id
    exposed = Exposure.__table__  # type: ignore[attr-defined]
    users = sa.select(exposed.c.user_id).where(exposed.c.experiment_id == experiment_id)
    return table.c.user_id.in_(users)


def find_out_of_range(
    engine: sa.Engine, span: TimestampRange, experiment_id: str | None = None
) -> list[OutOfRange]:
    """Stored exposures and interactions (of ``experiment_id``'s users, or all) with a
    timestamp outside ``span``; none is read as a date, so any stored value is safe."""
    found = []
    with engine.connect() as connection:
        for kind, model in _TABLES.items():
            table = model.__table__  # type: ignore[attr-defined]
            where = sa.and_(_outside(table, span), _scope(table, kind, experiment_id))
            rows = connection.execute(sa.select(sa.func.count()).where(where)).scalar_one()
            if not rows:
                continue
            key = [table.c[k] for k in CONTRACTS[kind].key if k != "timestamp"]
            examples = connection.execute(sa.select(*key).where(where).limit(_EXAMPLES)).all()
            named = [
                ", ".join(f"{c.name} {v}" for c, v in zip(key, row, strict=True))
                for row in examples
            ]
            found.append(OutOfRange(kind, int(rows), named))
    return found


def require_in_range(engine: sa.Engine, experiment_id: str, span: TimestampRange) -> None:
    """Refuse, naming the rows and the remedy, when ``experiment_id``'s stored rows have
    timestamps outside ``span``."""
    found = find_out_of_range(engine, span, experiment_id)
    if found:
        raise OutOfRangeError(
            f"{' and '.join(f.describe() for f in found)} of experiment {experiment_id!r} have "
            f"timestamps outside {span.describe()}, stored by an earlier version that did not "
            "check them: run `aftershock db check --remove` to move them to a file, then try "
            "again"
        )


def remove_out_of_range(engine: sa.Engine, span: TimestampRange, out: Path) -> dict[str, int]:
    """Write every stored row outside ``span`` to ``out`` (CSV: the kind, the contract columns,
    the timestamp as stored) and delete them, in one transaction; return the counts by kind.

    The file is written before the transaction commits: if writing fails nothing is deleted,
    and if the commit fails the file holds rows still stored (removing again is safe).
    """
    removed: dict[str, int] = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    with engine.begin() as connection, open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["kind", "stored_timestamp", "row"])
        for kind, model in _TABLES.items():
            table = model.__table__  # type: ignore[attr-defined]
            where = _outside(table, span)
            columns = [c for c in CONTRACTS[kind].columns if c != "timestamp"]
            stored = sa.cast(table.c.timestamp, sa.Text)  # never read as a date
            rows = connection.execute(
                sa.select(stored.label("stored"), *(table.c[c] for c in columns)).where(where)
            ).mappings()
            count = 0
            for row in rows:
                writer.writerow([kind.value, row["stored"], _json_row(row, columns)])
                count += 1
            if count:
                connection.execute(sa.delete(table).where(where))
            removed[kind.value] = count
    return removed


def _json_row(row: Any, columns: list[str]) -> str:
    import orjson

    return orjson.dumps({c: row[c] for c in columns}, default=str).decode()
