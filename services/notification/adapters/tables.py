"""Notification's tables (its own database)."""
import sqlalchemy as sa

metadata = sa.MetaData()

# What each institution's people see in their inbox; one row per notice delivered.
inbox_entries = sa.Table(
    "inbox_entries", metadata,
    sa.Column("notification_id", sa.Text, primary_key=True),
    sa.Column("institution", sa.Text, nullable=False, index=True),
    sa.Column("case_id", sa.Text, nullable=False),
    sa.Column("referral_id", sa.Text, nullable=True, index=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("urgency", sa.Text, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("summary_ro", sa.Text, nullable=False),
    sa.Column("summary_en", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("do_not_contact", sa.Boolean, nullable=False, server_default=sa.false()),
)
