"""Notification: the restriction of a case's processing (GDPR art. 18), as intake
announces it on punte.cases; nothing is sent about a restricted case (docs/decisions/0019).

Revision ID: 0007
"""
from alembic import op

from runtime.migrations import create_case_restrictions_table

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    create_case_restrictions_table(op)


def downgrade() -> None:
    op.drop_table("case_restrictions")
