"""Intake: the person's rights (GDPR art. 16, 18; docs/decisions/0019): restrictions of
cases, who rectified an identity version and why, and aliases of corrected CNPs.

Revision ID: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "case_restrictions",
        sa.Column("case_id", sa.Text, primary_key=True),
        sa.Column("restricted", sa.Boolean, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.Text, nullable=False),
        sa.Column("institution", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
    )
    op.create_table(
        "identity_rectifications",
        sa.Column("report_id", sa.Text, primary_key=True),
        sa.Column("child_ref", sa.Text, nullable=False, index=True),
        sa.Column("case_id", sa.Text, nullable=False),
        sa.Column("rectified_by", sa.Text, nullable=False),
        sa.Column("institution", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("purpose_text", sa.Text, nullable=True),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("rectified_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "pseudonym_aliases",
        sa.Column("alias_ref", sa.Text, primary_key=True),
        sa.Column("child_ref", sa.Text, nullable=False, index=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pseudonym_aliases")
    op.drop_table("identity_rectifications")
    op.drop_table("case_restrictions")
