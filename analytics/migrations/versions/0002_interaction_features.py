"""interaction features, and an index that covers what analyses read

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The covering index of analytics.models.Interaction as of this revision.
ANALYSED = [
    "prompt_length",
    "response_length",
    "has_agreement",
    "has_refusal",
    "has_hedge",
    "has_pushback",
    "has_constraint",
    "has_politeness",
    "has_question",
    "has_code_block",
    "latency_ms",
    "feedback",
    "complaint",
    "retry",
]


def upgrade() -> None:

    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prompt_length", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("response_length", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("has_agreement", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("has_refusal", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("has_hedge", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("has_pushback", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("has_constraint", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("has_politeness", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("has_question", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("has_code_block", sa.Boolean(), nullable=True))
        batch_op.drop_index("ix_interactions_user_time")
        batch_op.create_index(
            "ix_interactions_user_time_metrics", ["user_id", "timestamp", *ANALYSED], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_index("ix_interactions_user_time_metrics")
        batch_op.create_index("ix_interactions_user_time", ["user_id", "timestamp"], unique=False)
        batch_op.drop_column("has_code_block")
        batch_op.drop_column("has_question")
        batch_op.drop_column("has_politeness")
        batch_op.drop_column("has_constraint")
        batch_op.drop_column("has_pushback")
        batch_op.drop_column("has_hedge")
        batch_op.drop_column("has_refusal")
        batch_op.drop_column("has_agreement")
        batch_op.drop_column("response_length")
        batch_op.drop_column("prompt_length")
