"""Intake's tables (its own database)."""
import sqlalchemy as sa

metadata = sa.MetaData()

# Every inbound message intake answered, with the outcome it sent.
reports = sa.Table(
    "reports", metadata,
    sa.Column("message_key", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, nullable=True),
    sa.Column("event_type", sa.Text, nullable=True),
    sa.Column("sender", sa.Text, nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("reason_code", sa.Text, nullable=True),
    sa.Column("case_id", sa.Text, nullable=True),
    sa.Column("answer", sa.JSON, nullable=True),
)

cases = sa.Table(
    "cases", metadata,
    sa.Column("case_id", sa.Text, primary_key=True),
    sa.Column("child_ref", sa.Text, nullable=False, index=True),
    sa.Column("uat_siruta", sa.Integer, nullable=True),
    sa.Column("county", sa.Text, nullable=False),
    sa.Column("birth_year", sa.Integer, nullable=True),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("urgency", sa.Text, nullable=False),
    sa.Column("lead", sa.Text, nullable=False),
    sa.Column("informed", sa.JSON, nullable=False),
    sa.Column("report_id", sa.Text, nullable=False),
    sa.Column("reporter", sa.Text, nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("do_not_contact", sa.Boolean, nullable=False),
    sa.Column("deadlines", sa.JSON, nullable=False),
    # Set once, when the lead closes the case (status "closed"; migration 0005).
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("closed_by", sa.Text, nullable=True),  # the lead institution
    sa.Column("closure_reason", sa.Text, nullable=True),  # case-closure-reasons.yaml
)

# Every report a case holds, with who sent it.
case_reports = sa.Table(
    "case_reports", metadata,
    sa.Column("case_id", sa.Text, primary_key=True),
    sa.Column("report_id", sa.Text, primary_key=True),
    sa.Column("reporter", sa.Text, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

# Who the child is, encrypted (adapters/vault.py); only intake's database holds it. One
# version per report that identified the child, never overwritten: the latest is current.
identities = sa.Table(
    "identities", metadata,
    sa.Column("version", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("child_ref", sa.Text, nullable=False),
    sa.Column("report_id", sa.Text, nullable=True),  # None: kept before versions (0003)
    sa.Column("reporter", sa.Text, nullable=True),
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("nonce", sa.LargeBinary, nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_identities_child_ref_version", "child_ref", "version"),
)

household_links = sa.Table(
    "household_links", metadata,
    sa.Column("child_ref", sa.Text, primary_key=True),
    sa.Column("sibling_ref", sa.Text, primary_key=True),
)

# Possible duplicates found by name, birth and place, waiting for a person's decision.
duplicate_candidates = sa.Table(
    "duplicate_candidates", metadata,
    sa.Column("case_id", sa.Text, primary_key=True),
    sa.Column("candidate_case_id", sa.Text, primary_key=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("decided_by", sa.Text, nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
)
