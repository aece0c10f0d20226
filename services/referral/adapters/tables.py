"""Referral's tables (its own database)."""
import sqlalchemy as sa

metadata = sa.MetaData()

referrals = sa.Table(
    "referrals", metadata,
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

# Every referral command an institution sent, with the outcome it got.
commands = sa.Table(
    "commands", metadata,
    sa.Column("message_key", sa.Text, primary_key=True),
    sa.Column("event_type", sa.Text),
    sa.Column("sender", sa.Text),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("reason_code", sa.Text),
)
