"""Notification: the purge job's runtime tables (data keys, erasures, sealed dead-letter
bodies), and the delivery logs' indexes the purge reads by age.

Revision ID: 0006
"""
import sqlalchemy as sa
from alembic import op

from runtime.migrations import create_retention_tables

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    create_retention_tables(op)
    op.create_index("ix_inbox_entries_case", "inbox_entries", ["case_id"])
    op.create_index("ix_webhook_deliveries_done", "webhook_deliveries", ["created_at"],
                    postgresql_where=sa.text("status <> 'pending'"))
    op.create_index("ix_people_deliveries_done", "people_deliveries", ["created_at"],
                    postgresql_where=sa.text("status <> 'pending'"))


def downgrade() -> None:
    op.drop_index("ix_people_deliveries_done", "people_deliveries")
    op.drop_index("ix_webhook_deliveries_done", "webhook_deliveries")
    op.drop_index("ix_inbox_entries_case", "inbox_entries")
    for table in ("punte_dead_letters", "punte_erasures", "punte_data_keys"):
        op.drop_table(table)
