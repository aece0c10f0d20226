"""Who reported each case (reporting alone makes no participant, contracts/reference/
access.yaml), and each referral's outcome code, which its referrer sees without the history.

Revision ID: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("cases", sa.Column("reporters", sa.JSON, nullable=False, server_default="[]"))
    # Cases opened before: their first reporter is the referrer of the case's own referral.
    op.execute("""
        UPDATE cases SET reporters = found.reporters
        FROM (SELECT case_id, json_agg(DISTINCT referrer) AS reporters
              FROM referrals WHERE kind = 'case' AND forwarded_from IS NULL GROUP BY case_id) AS found
        WHERE found.case_id = cases.case_id
    """)
    op.add_column("referrals", sa.Column("outcome", sa.Text))
    op.execute("""
        UPDATE referrals SET outcome = done.outcome
        FROM (SELECT DISTINCT ON (referral_id) referral_id, outcome FROM referral_history
              WHERE command = 'complete' AND outcome IS NOT NULL ORDER BY referral_id, id DESC) AS done
        WHERE done.referral_id = referrals.referral_id AND referrals.state = 'completed'
    """)


def downgrade() -> None:
    op.drop_column("referrals", "outcome")
    op.drop_column("cases", "reporters")
