"""Referral: referrals, commands, and the runtime's outbox and inbox.

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
        "referrals",
        sa.Column("referral_id", sa.Text, primary_key=True),
        sa.Column("case_id", sa.Text, nullable=False, unique=True),
        sa.Column("referrer", sa.Text, nullable=False),
        sa.Column("to_institution", sa.Text, nullable=False),
        sa.Column("urgency", sa.Text, nullable=False),
        sa.Column("categories", sa.JSON, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "commands",
        sa.Column("message_key", sa.Text, primary_key=True),
        sa.Column("event_type", sa.Text),
        sa.Column("sender", sa.Text),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("reason_code", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("commands")
    op.drop_table("referrals")
