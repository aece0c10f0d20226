"""Referral: the broker epochs this service has seen (runtime.broker_epoch, decision 0026).

Revision ID: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    # One row per broker epoch seen, in order: a new one republishes the outbox and rewinds
    # the consumers. An epoch id may come back (ordinal is the order, not the id).
    op.create_table(
        "punte_broker_epochs",
        sa.Column("ordinal", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("epoch_id", sa.Text, nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("punte_broker_epochs")
