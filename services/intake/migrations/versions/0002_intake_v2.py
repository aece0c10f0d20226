"""Intake v2: the answer kept per report, case status and safety, the case's reports,
the encrypted identity vault, household links, duplicate candidates.

Revision ID: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("reports", sa.Column("answer", sa.JSON))
    op.alter_column("cases", "uat_siruta", nullable=True)
    op.add_column("cases", sa.Column("county", sa.Text, nullable=False, server_default="BC"))
    op.add_column("cases", sa.Column("birth_year", sa.Integer))
    op.add_column("cases", sa.Column("status", sa.Text, nullable=False, server_default="open"))
    op.add_column("cases", sa.Column("do_not_contact", sa.Boolean, nullable=False,
                                     server_default=sa.false()))
    op.add_column("cases", sa.Column("deadlines", sa.JSON, nullable=False, server_default="{}"))
    op.create_index("ix_cases_place_birth", "cases", ["county", "uat_siruta", "birth_year"])
    op.create_table(
        "case_reports",
        sa.Column("case_id", sa.Text, primary_key=True),
        sa.Column("report_id", sa.Text, primary_key=True),
        sa.Column("reporter", sa.Text, nullable=False),
        sa.Column("categories", sa.JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute("INSERT INTO case_reports SELECT case_id, report_id, reporter, categories, opened_at FROM cases")
    op.create_table(
        "identities",
        sa.Column("child_ref", sa.Text, primary_key=True),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("nonce", sa.LargeBinary, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "household_links",
        sa.Column("child_ref", sa.Text, primary_key=True),
        sa.Column("sibling_ref", sa.Text, primary_key=True),
    )
    op.create_table(
        "duplicate_candidates",
        sa.Column("case_id", sa.Text, primary_key=True),
        sa.Column("candidate_case_id", sa.Text, primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("decided_by", sa.Text),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    for table in ("duplicate_candidates", "household_links", "identities", "case_reports"):
        op.drop_table(table)
    op.drop_index("ix_cases_place_birth", "cases")
    for column in ("deadlines", "do_not_contact", "status", "birth_year", "county"):
        op.drop_column("cases", column)
    op.drop_column("reports", "answer")
