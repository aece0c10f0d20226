"""What notification knows of each case and referral, whole: urgency, categories, the
do-not-contact flag and the lead. Inbox entries hold each recipient's need-to-know view,
so later notices must not take their facts from them.

Revision ID: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "facts",
        sa.Column("subject_id", sa.Text, primary_key=True),
        sa.Column("case_id", sa.Text, nullable=False),
        sa.Column("urgency", sa.Text, nullable=False),
        sa.Column("categories", sa.JSON, nullable=False),
        sa.Column("do_not_contact", sa.Boolean, nullable=False),
        sa.Column("lead", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_facts_case", "facts", ["case_id", "created_at"])
    # Cases and referrals notified before this table: their facts from their first notice.
    op.execute("""
        INSERT INTO facts (subject_id, case_id, urgency, categories, do_not_contact, lead, created_at)
        SELECT DISTINCT ON (referral_id) referral_id, case_id, urgency, categories, do_not_contact,
               institution, created_at
        FROM inbox_entries WHERE kind = 'referral-requested' AND referral_id IS NOT NULL
        ORDER BY referral_id, created_at
        ON CONFLICT DO NOTHING
    """)


def downgrade() -> None:
    op.drop_table("facts")
