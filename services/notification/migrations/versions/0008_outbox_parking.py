"""Notification: outbox rows the relay cannot publish are parked with their reason, and
dead letters are counted from the outbox (decision 0021).

Revision ID: 0008
"""
from alembic import op

from runtime.migrations import add_outbox_parking, index_outbox_dead_letters

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    add_outbox_parking(op)
    index_outbox_dead_letters(op)
