"""People are told through their channels: acknowledgement of entries, the queue of
e-mails and SMS (also the digest), P0 alerts that escalate, owners of referrals and
personal preferences.

Revision ID: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("inbox_entries", sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("inbox_entries", sa.Column("acknowledged_by", sa.Text, nullable=True))
    op.add_column("inbox_entries", sa.Column("deadline", sa.DateTime(timezone=True), nullable=True))
    # The summaries e-mails carry: special categories (health, sexual abuse) not named.
    op.add_column("inbox_entries", sa.Column("mail_summary_ro", sa.Text, nullable=True))
    op.add_column("inbox_entries", sa.Column("mail_summary_en", sa.Text, nullable=True))
    op.create_table(
        "people_deliveries",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("notification_id", sa.Text, nullable=False),
        sa.Column("institution", sa.Text, nullable=False),
        sa.Column("person", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("round", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("provider_id", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name="ck_people_deliveries_status"),
        sa.CheckConstraint("channel IN ('email', 'sms')", name="ck_people_deliveries_channel"),
        # A redelivered event, or a second sweep of the alert loop, adds nothing.
        sa.UniqueConstraint("notification_id", "person", "channel", "purpose", "round",
                            name="uq_people_deliveries_once"),
    )
    op.create_index("ix_people_deliveries_due", "people_deliveries", ["status", "due_at"])
    op.create_index("ix_people_deliveries_notification", "people_deliveries", ["notification_id"])
    op.create_table(
        "alerts",
        sa.Column("notification_id", sa.Text, primary_key=True),
        sa.Column("institution", sa.Text, nullable=False),
        sa.Column("level", sa.Integer, nullable=False, server_default="0"),
        sa.Column("round", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sends", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_alerts_due", "alerts", ["next_at"], postgresql_where=sa.text("next_at IS NOT NULL"))
    op.create_table(
        "referral_owners",
        sa.Column("referral_id", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
    )
    op.create_table(
        "preferences",
        sa.Column("person", sa.Text, primary_key=True),
        sa.Column("channels", sa.JSON, nullable=False),
        sa.Column("digest", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("preferences", "referral_owners", "alerts", "people_deliveries"):
        op.drop_table(table)
    op.drop_column("inbox_entries", "mail_summary_en")
    op.drop_column("inbox_entries", "mail_summary_ro")
    op.drop_column("inbox_entries", "deadline")
    op.drop_column("inbox_entries", "acknowledged_by")
    op.drop_column("inbox_entries", "acknowledged_at")
