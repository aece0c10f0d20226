"""Intake's tables (its own database)."""
import sqlalchemy as sa

metadata = sa.MetaData()

# Every inbound message intake answered, with the outcome it sent.
reports = sa.Table(
    "reports", metadata,
    sa.Column("message_key", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, nullable=True),
    sa.Column("event_type", sa.Text, nullable=True),
    sa.Column("sender", sa.Text, nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("reason_code", sa.Text, nullable=True),
    sa.Column("case_id", sa.Text, nullable=True),
)

cases = sa.Table(
    "cases", metadata,
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
