"""Column types shared by the models and the migrations (keep them stable: migrations import
them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: an alias of the rowid
# Identifiers use the byte-wise "C" collation on PostgreSQL: they are compared and joined,
# never sorted for people, and C is several times faster to index than a linguistic one.
Identifier = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")
JsonDocument = sa.JSON().with_variant(JSONB(), "postgresql")


def to_epoch_us(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware (or naive = UTC) datetime."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class UtcTimestamp(sa.types.TypeDecorator[datetime]):
    """An instant in UTC: ``timestamptz`` on PostgreSQL, epoch microseconds on SQLite.

    SQLite has no date type; integers make its indexes small, its comparisons exact and its
    date arithmetic plain integer arithmetic. Python always sees aware UTC datetimes.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.BigInteger())
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return to_epoch_us(value)
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return EPOCH + timedelta(microseconds=int(value))
        result: datetime = value
        return result.astimezone(UTC)
