"""Notification: each institution's webhook secret (Standard Webhooks "v1", HMAC-SHA256),
sealed under the data key of scope ``webhook:<institution>`` (decision 0040).

Revision ID: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    # Subscriptions from before this table have no secret: their webhooks keep carrying the
    # network's Ed25519 signature (v1a) only until one is made (punte webhooks rotate-secret).
    op.create_table(
        "webhook_secrets",
        sa.Column("institution", sa.Text, primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_secrets")
