"""Audit: whether the consumers finished reading each broker epoch from its beginning
(runtime.broker_epoch, decision 0026).

Revision ID: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    # NULL: the rewind in that epoch is not finished; a restart rewinds again. The epochs
    # recorded before this column were rewound as far as the runtime then knew.
    op.add_column("punte_broker_epochs", sa.Column("rewound_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE punte_broker_epochs SET rewound_at = seen_at")


def downgrade() -> None:
    op.drop_column("punte_broker_epochs", "rewound_at")
