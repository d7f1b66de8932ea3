"""a content digest on every stored exposure and interaction

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

A re-ingest compares each incoming row with the stored row of the same key to report
conflicting duplicates. Comparing a 64-bit digest of the content (analytics.ingest.conflicts)
instead of reading the prompts and responses back makes that read 8 bytes a row. Rows stored
before this revision keep NULL and are compared whole, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("exposures", "interactions")


def upgrade() -> None:
    for table in TABLES:
        # A nullable column without a default: a catalogue change on both engines, whatever
        # the table's size.
        op.add_column(table, sa.Column("content_digest", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("content_digest")
