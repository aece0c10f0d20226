"""Intake: reports, cases, and the runtime's outbox and inbox.

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
        "reports",
        sa.Column("message_key", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text),
        sa.Column("event_type", sa.Text),
        sa.Column("sender", sa.Text),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("reason_code", sa.Text),
        sa.Column("case_id", sa.Text),
    )
    op.create_table(
        "cases",
        sa.Column("case_id", sa.Text, primary_key=True),
        sa.Column("child_ref", sa.Text, nullable=False, index=True),
        sa.Column("uat_siruta", sa.Integer, nullable=False),
        sa.Column("categories", sa.JSON, nullable=False),
        sa.Column("urgency", sa.Text, nullable=False),
        sa.Column("lead", sa.Text, nullable=False),
        sa.Column("informed", sa.JSON, nullable=False),
        sa.Column("report_id", sa.Text, nullable=False),
        sa.Column("reporter", sa.Text, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cases")
    op.drop_table("reports")
