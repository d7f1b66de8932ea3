"""interactions may be stored without their text

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

With ``AFTERSHOCK_STORE_TEXT`` at ``sample`` (the default) or ``none``, an interaction is stored
with its features and without its prompt (analytics.ingest.retention), so ``prompt`` may be
NULL. On SQLite the table is rebuilt (its rows copied once); on PostgreSQL it is a catalogue
change.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("interactions") as batch_op:
        batch_op.alter_column("prompt", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    # Rows stored without text get an empty prompt: NOT NULL again, nothing invented.
    op.execute("UPDATE interactions SET prompt = '' WHERE prompt IS NULL")
    with op.batch_alter_table("interactions") as batch_op:
        batch_op.alter_column("prompt", existing_type=sa.Text(), nullable=False)
