"""The audit trail becomes an RFC 9162 Merkle log: leaf hashes instead of the chain, the
tree's perfect subtrees, signed checkpoints and cosignatures; search by child and actor.

Revision ID: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("audit_entries", sa.Column("leaf_hash", sa.LargeBinary))
    # RFC 9162 leaf hash of the bytes already stored.
    op.execute("UPDATE audit_entries SET leaf_hash = sha256('\\x00'::bytea || entry)")
    op.alter_column("audit_entries", "leaf_hash", nullable=False)
    op.drop_column("audit_entries", "hash")
    op.add_column("audit_entries", sa.Column("child_ref", sa.Text))
    op.add_column("audit_entries", sa.Column("actor", sa.Text))
    op.create_index("ix_audit_entries_child_ref", "audit_entries", ["child_ref"])
    op.create_index("ix_audit_entries_actor", "audit_entries", ["actor"])
    op.create_table(
        "tree_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("index", sa.BigInteger, primary_key=True),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    # Existing entries are integrated by the service's tree loop, from size 0.
    op.create_table(
        "tree_state",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO tree_state (id, size) VALUES (1, 0)")
    op.create_table(
        "checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "cosignatures",
        sa.Column("size", sa.BigInteger, primary_key=True),
        sa.Column("witness", sa.Text, primary_key=True),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("signed_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("cosignatures", "checkpoints", "tree_state", "tree_nodes"):
        op.drop_table(table)
    op.drop_index("ix_audit_entries_actor", "audit_entries")
    op.drop_index("ix_audit_entries_child_ref", "audit_entries")
    op.drop_column("audit_entries", "actor")
    op.drop_column("audit_entries", "child_ref")
    op.add_column("audit_entries", sa.Column("hash", sa.LargeBinary))
    op.drop_column("audit_entries", "leaf_hash")
