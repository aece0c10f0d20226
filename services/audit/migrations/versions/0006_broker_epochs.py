"""Broker epochs (decision 0025): a position is unique within its epoch, since a broker
that lost its log numbers offsets from 0 again.

Revision ID: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("audit_entries", sa.Column("epoch", sa.Integer, nullable=False, server_default="1"))
    op.drop_constraint("uq_audit_entries_position", "audit_entries", type_="unique")
    op.create_unique_constraint("uq_audit_entries_epoch_position", "audit_entries",
                                ["epoch", "topic", "partition", "offset"])


def downgrade() -> None:
    op.drop_constraint("uq_audit_entries_epoch_position", "audit_entries", type_="unique")
    op.create_unique_constraint("uq_audit_entries_position", "audit_entries", ["topic", "partition", "offset"])
    op.drop_column("audit_entries", "epoch")
