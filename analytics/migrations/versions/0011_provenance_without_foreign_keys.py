"""exposures and interactions name their ingest run without a foreign key

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

``ingest_run_id`` records which ingest run stored a row. Only the ingest writes it, with the id
of the run it has just committed, and runs are never deleted, so the foreign key guarded
nothing the code can break; PostgreSQL checked it with a trigger per inserted row: a million
interactions took 20.1 s to ingest with it and 15.3 s without (paired runs). SQLite's check
cost no measurable time, but both engines keep one schema. The columns stay; ``ingest_rejects``
keeps its foreign key (a few rows per file).

SQLite cannot drop a constraint in place: its two tables are copied into new ones, once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("exposures", "interactions")
# SQLite's foreign keys have no names: batch mode names them by this convention to drop them.
_NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _foreign_key(table: str) -> str | None:
    """The name of ``table``'s foreign key on ingest_run_id (None when it has none); SQLite's
    unnamed key gets the name :data:`_NAMING` gives it."""
    for key in sa.inspect(op.get_bind()).get_foreign_keys(table):
        if key["constrained_columns"] == ["ingest_run_id"]:
            return key["name"] or f"fk_{table}_ingest_run_id_ingest_runs"
    return None


def upgrade() -> None:
    for table in TABLES:
        name = _foreign_key(table)
        if name is None:
            continue
        if op.get_bind().dialect.name == "sqlite":
            with op.batch_alter_table(table, naming_convention=_NAMING) as batch_op:
                batch_op.drop_constraint(name, type_="foreignkey")
        else:
            op.drop_constraint(name, table, type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_foreign_key(
                f"{table}_ingest_run_id_fkey", "ingest_runs", ["ingest_run_id"], ["id"]
            )
