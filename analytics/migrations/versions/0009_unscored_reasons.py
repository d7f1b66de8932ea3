"""how each analysed user was scored, and why not

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

users.csv gained ``adaptation_method`` (``pre_post``, ``learning_curve``) and
``unscored_reason``; a stored run keeps them too. Runs stored before have NULL in both.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("adaptation_method", "unscored_reason")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("analysis_users", sa.Column(name, sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analysis_users") as batch_op:
        for name in COLUMNS:
            batch_op.drop_column(name)
