"""Intake: a case closes (when, by whom, why), and the purge job's runtime tables (data
keys, erasures, sealed dead-letter bodies).

Revision ID: 0005
"""
import sqlalchemy as sa
from alembic import op

from runtime.migrations import create_retention_tables

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    create_retention_tables(op)
    op.add_column("cases", sa.Column("closed_at", sa.DateTime(timezone=True)))
    op.add_column("cases", sa.Column("closed_by", sa.Text))
    op.add_column("cases", sa.Column("closure_reason", sa.Text))
    # Refused answers are purged by age (unconfirmed-report).
    op.create_index("ix_reports_refused_age", "reports", ["received_at"],
                    postgresql_where=sa.text("outcome = 'rejected'"))


def downgrade() -> None:
    op.drop_index("ix_reports_refused_age", "reports")
    for column in ("closure_reason", "closed_by", "closed_at"):
        op.drop_column("cases", column)
    for table in ("punte_dead_letters", "punte_erasures", "punte_data_keys"):
        op.drop_table(table)
