"""Audit: who leads and who takes part in each case, so the person's export (GDPR art. 15)
is answered to the lead's data-protection officer only (docs/decisions/0019).

Revision ID: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "case_sides",
        sa.Column("case_id", sa.Text, primary_key=True),
        sa.Column("lead", sa.Text, nullable=False),
        sa.Column("participants", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("case_sides")
