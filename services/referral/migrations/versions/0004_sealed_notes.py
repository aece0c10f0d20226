"""Notes and feedback sealed in the case file (issue #11): the data keys table, the notes
table, and each history step's note id. Notes already in referral_history.note are sealed
by the service at start (it holds the keys; a migration does not).

Revision ID: 0004
"""
import sqlalchemy as sa
from alembic import op

from runtime.migrations import create_data_keys_table

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    create_data_keys_table(op)
    op.create_table(
        "referral_notes",
        sa.Column("note_id", sa.Text, primary_key=True),
        sa.Column("referral_id", sa.Text, nullable=False, index=True),
        sa.Column("case_id", sa.Text, nullable=False, index=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("author_institution", sa.Text),
        sa.Column("author_person", sa.Text),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.add_column("referral_history", sa.Column("note_id", sa.Text))


def downgrade() -> None:
    op.drop_column("referral_history", "note_id")
    op.drop_table("referral_notes")
    op.drop_table("punte_data_keys")
