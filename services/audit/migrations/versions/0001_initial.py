"""Audit: the entry chain, and the runtime's outbox and inbox.

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
        "audit_entries",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.Text),
        sa.Column("event_type", sa.Text),
        sa.Column("source", sa.Text),
        sa.Column("case_id", sa.Text),
        sa.Column("institution", sa.Text),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entry", sa.LargeBinary, nullable=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        # A record is appended once, however often it is consumed.
        sa.UniqueConstraint("topic", "partition", "offset", name="uq_audit_entries_position"),
    )
    for column in ("event_type", "case_id", "institution", "recorded_at"):
        op.create_index(f"ix_audit_entries_{column}", "audit_entries", [column])


def downgrade() -> None:
    op.drop_table("audit_entries")
