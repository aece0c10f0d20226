"""Log version 2 (decision 0016): entries commit to their values' digests, values are kept
sealed under a data key per scope, and the purge job erases them by the retention schedule.

Revision ID: 0003
"""
import sqlalchemy as sa
from alembic import op

from runtime.migrations import create_data_keys_table, create_erasures_table

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    create_data_keys_table(op)
    create_erasures_table(op)
    op.add_column("audit_entries", sa.Column("value_scope", sa.Text))
    op.add_column("audit_entries", sa.Column("purpose", sa.Text))
    op.create_index("ix_audit_entries_value_scope", "audit_entries", ["value_scope"])
    op.create_table(
        "audit_sealed_values",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_report_cases",
        sa.Column("report_id", sa.Text, primary_key=True),
        sa.Column("case_id", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_report_cases_case_id", "audit_report_cases", ["case_id"])


def downgrade() -> None:
    op.drop_table("audit_report_cases")
    op.drop_table("audit_sealed_values")
    op.drop_index("ix_audit_entries_value_scope", "audit_entries")
    op.drop_column("audit_entries", "purpose")
    op.drop_column("audit_entries", "value_scope")
    op.drop_table("punte_erasures")
    op.drop_table("punte_data_keys")
