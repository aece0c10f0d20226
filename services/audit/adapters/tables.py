"""Audit's tables (its own database): the entries, the values they commit to (sealed),
the Merkle tree over the entries, and the signed checkpoints with their witnesses'
cosignatures. (runtime.data_keys and runtime.retention keep their own tables.)"""
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

metadata = sa.MetaData()

# Append-only, one row per Kafka record; seq - 1 is the leaf's index in the tree.
audit_entries = sa.Table(
    "audit_entries", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    # The broker epoch the position belongs to (decision 0025): 1 until a broker lost its log.
    sa.Column("epoch", sa.Integer, nullable=False, server_default="1"),
    sa.Column("event_id", sa.Text, nullable=True),
    sa.Column("event_type", sa.Text, nullable=True),
    sa.Column("source", sa.Text, nullable=True),
    sa.Column("case_id", sa.Text, nullable=True),
    sa.Column("child_ref", sa.Text, nullable=True),
    sa.Column("actor", sa.Text, nullable=True),
    sa.Column("institution", sa.Text, nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, index=True),
    # The access purpose's code, for access events (searchable; never the free text).
    sa.Column("purpose", sa.Text, nullable=True),
    sa.Column("entry", sa.LargeBinary, nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
    # Log version 2: the scope whose data key seals the value (null: no value, or version 1).
    sa.Column("value_scope", sa.Text, nullable=True),
    sa.UniqueConstraint("epoch", "topic", "partition", "offset", name="uq_audit_entries_epoch_position"),
)

# What auditors search the trail by, and erasure finds entries by: each column's value as
# "column=value", in one GIN index over audit_search_terms() (migration 0009, decision 0045),
# whose arguments are these columns in this order (the index's expression must match).
SEARCH_COLUMNS = ("event_type", "case_id", "child_ref", "actor", "institution", "value_scope")


def _search_terms() -> sa.ColumnElement[list[str]]:
    return sa.func.audit_search_terms(*(audit_entries.c[c] for c in SEARCH_COLUMNS), type_=ARRAY(sa.Text))


def _term(column: str, value: str) -> str:
    if column not in SEARCH_COLUMNS:
        raise ValueError(f"the trail is not searched by {column}")
    return f"{column}={value}"


def holding(**terms: str) -> sa.ColumnElement[bool]:
    """Entries whose columns hold every one of ``terms`` (column=value), one index lookup.
    No terms is refused: it would match every entry."""
    if not terms:
        raise ValueError("a search of the trail needs at least one term")
    return _search_terms().contains([_term(c, v) for c, v in terms.items()])


def holding_any(column: str, values: Iterable[str]) -> sa.ColumnElement[bool]:
    """Entries whose ``column`` holds any of ``values``."""
    return _search_terms().overlap([_term(column, v) for v in values])

# The values version 2 entries commit to, sealed under their scope's data key and bound to
# the entry's leaf hash; a row goes when its scope is erased.
audit_sealed_values = sa.Table(
    "audit_sealed_values", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
)

# Which case each report joined (from the network's case.opened and case.report-added), so
# records about a report are sealed, erased and told about with its case.
audit_report_cases = sa.Table(
    "audit_report_cases", metadata,
    sa.Column("report_id", sa.Text, primary_key=True),
    sa.Column("case_id", sa.Text, nullable=False, index=True),
)

# Every perfect subtree of the Merkle tree (level 0 = leaves), so a root or a proof for any
# size takes a few lookups.
tree_nodes = sa.Table(
    "tree_nodes", metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True),
    sa.Column("index", sa.BigInteger, primary_key=True),
    sa.Column("hash", sa.LargeBinary, nullable=False),
)

# How many entries the tree holds (integrated); one row.
tree_state = sa.Table(
    "tree_state", metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
)

checkpoints = sa.Table(
    "checkpoints", metadata,
    sa.Column("size", sa.BigInteger, primary_key=True),
    sa.Column("root", sa.LargeBinary, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
)

cosignatures = sa.Table(
    "cosignatures", metadata,
    sa.Column("size", sa.BigInteger, primary_key=True),
    sa.Column("witness", sa.Text, primary_key=True),
    sa.Column("line", sa.Text, nullable=False),
    sa.Column("signed_at", sa.BigInteger, nullable=False),
)
