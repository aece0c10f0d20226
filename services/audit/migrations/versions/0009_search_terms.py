"""Audit: the columns auditors search by and erasure finds entries by, in one GIN index
instead of a B-tree each (decision 0045).

Six B-trees, three of them on random keys (case, child, value scope), made each append
touch six random index pages; at a million entries the trail appended 6 000-7 200 entries
a second, without them about 9 500 (bench/README.md, the tenth session of issue #14).
A GIN index keeps new entries in its pending list and merges them in bulk.

Revision ID: 0009
"""
from alembic import op

revision = "0009"
down_revision = "0008"

COLUMNS = ("event_type", "case_id", "child_ref", "actor", "institution", "value_scope")


def upgrade() -> None:
    # IMMUTABLE and plain SQL, so the planner inlines it and matches the index's expression.
    terms = ", ".join(f"'{c}=' || {c}" for c in COLUMNS)
    op.execute(f"CREATE FUNCTION audit_search_terms({', '.join(f'{c} text' for c in COLUMNS)}) "
               f"RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE "
               f"AS $$ SELECT array_remove(ARRAY[{terms}], NULL) $$")
    op.execute(f"CREATE INDEX ix_audit_entries_search_terms ON audit_entries "
               f"USING gin (audit_search_terms({', '.join(COLUMNS)}))")
    for column in COLUMNS:
        op.drop_index(f"ix_audit_entries_{column}", "audit_entries")


def downgrade() -> None:
    for column in COLUMNS:
        op.create_index(f"ix_audit_entries_{column}", "audit_entries", [column])
    op.drop_index("ix_audit_entries_search_terms", "audit_entries")
    op.execute("DROP FUNCTION audit_search_terms")
