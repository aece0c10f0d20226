"""Inbox entries carry the case's do-not-contact flag.

Revision ID: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("inbox_entries", sa.Column("do_not_contact", sa.Boolean, nullable=False,
                                             server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("inbox_entries", "do_not_contact")
