"""Audit's tables (its own database)."""
import sqlalchemy as sa

metadata = sa.MetaData()

# The chain: append-only, one row per Kafka record, in the order it was appended.
audit_entries = sa.Table(
    "audit_entries", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.Text, nullable=True),
    sa.Column("event_type", sa.Text, nullable=True, index=True),
    sa.Column("source", sa.Text, nullable=True),
    sa.Column("case_id", sa.Text, nullable=True, index=True),
    sa.Column("institution", sa.Text, nullable=True, index=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("entry", sa.LargeBinary, nullable=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("topic", "partition", "offset", name="uq_audit_entries_position"),
)
