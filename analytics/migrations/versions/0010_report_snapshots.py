"""analysis runs know what they are for and which data they read

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

A weekly report needs the analysis as of the week's start and end. Storing those snapshots
(``purpose = 'report_snapshot'``, never shown as an experiment's latest analysis) with the
version of the data they read (``data_version``) lets the next report of the same week, or a
report whose week ends after the data does, reuse them instead of analysing twice again.
Runs stored before have ``purpose = 'analysis'`` and no data version (never reused).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "analysis_runs",
        sa.Column("purpose", sa.String(16), nullable=False, server_default="analysis"),
    )
    op.add_column("analysis_runs", sa.Column("data_version", sa.String(128), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM analysis_runs WHERE purpose = 'report_snapshot'")
    with op.batch_alter_table("analysis_runs") as batch_op:
        batch_op.drop_column("data_version")
        batch_op.drop_column("purpose")
