"""Notification: inbox entries, and the runtime's outbox and inbox.

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op

from runtime.migrations import create_runtime_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_runtime_tables(op)
    op.create_table(
        "inbox_entries",
        sa.Column("notification_id", sa.Text, primary_key=True),
        sa.Column("institution", sa.Text, nullable=False),
        sa.Column("case_id", sa.Text, nullable=False),
        sa.Column("referral_id", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("urgency", sa.Text, nullable=False),
        sa.Column("categories", sa.JSON, nullable=False),
        sa.Column("summary_ro", sa.Text, nullable=False),
        sa.Column("summary_en", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True)),
    )
    # An inbox is read newest first, one institution at a time.
    op.create_index("ix_inbox_entries_institution", "inbox_entries",
                    ["institution", sa.text("created_at DESC")])
    op.create_index("ix_inbox_entries_referral_id", "inbox_entries", ["referral_id"])


def downgrade() -> None:
    op.drop_table("inbox_entries")
