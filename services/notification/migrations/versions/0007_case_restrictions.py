"""Notification: the restriction of a case's processing (GDPR art. 18), as intake
announces it on punte.cases; nothing is sent about a restricted case (docs/decisions/0019).

Revision ID: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "case_restrictions",
        sa.Column("case_id", sa.Text, primary_key=True),
        sa.Column("restricted", sa.Boolean, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("case_restrictions")
