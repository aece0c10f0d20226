"""Intake: a child's identity kept as one version per report, never overwritten (issue
#10). The identity each child had becomes its first version (no report id known).

Revision ID: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.drop_constraint("identities_pkey", "identities", type_="primary")
    # Identity columns number the rows already there, in no particular order: one per child.
    op.add_column("identities", sa.Column("version", sa.BigInteger, sa.Identity(), nullable=False))
    op.create_primary_key("identities_pkey", "identities", ["version"])
    op.add_column("identities", sa.Column("report_id", sa.Text))
    op.add_column("identities", sa.Column("reporter", sa.Text))
    op.alter_column("identities", "updated_at", new_column_name="recorded_at")
    op.create_index("ix_identities_child_ref_version", "identities", ["child_ref", "version"])


def downgrade() -> None:
    # Back to one row per child: the current (latest) version of each.
    op.execute("DELETE FROM identities older USING identities newer "
               "WHERE older.child_ref = newer.child_ref AND older.version < newer.version")
    op.drop_index("ix_identities_child_ref_version", "identities")
    op.alter_column("identities", "recorded_at", new_column_name="updated_at")
    op.drop_column("identities", "reporter")
    op.drop_column("identities", "report_id")
    op.drop_constraint("identities_pkey", "identities", type_="primary")
    op.drop_column("identities", "version")
    op.create_primary_key("identities_pkey", "identities", ["child_ref"])
