"""Referral: the reports each case holds (named when the case closes), and the purge
job's runtime tables (data keys, erasures, sealed dead-letter bodies; created if missing:
the change sealing a case's notes may create the first).

Revision ID: 0004
"""
import sqlalchemy as sa
from alembic import op

from runtime.migrations import create_retention_tables

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    create_retention_tables(op)
    op.create_table(
        "case_reports",
        sa.Column("case_id", sa.Text, primary_key=True),
        sa.Column("report_id", sa.Text, primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("case_reports")
    for table in ("punte_dead_letters", "punte_erasures", "punte_data_keys"):
        op.drop_table(table)
