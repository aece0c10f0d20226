"""Referral lifecycle: several referrals per case, owner and history, durable timers,
the case plan, the service directory.

Revision ID: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # Several referrals per case now (forwarding, direct referrals, the service plan).
    op.drop_constraint("referrals_case_id_key", "referrals", type_="unique")
    op.create_index("ix_referrals_case_id", "referrals", ["case_id"])
    op.create_index("ix_referrals_to_institution", "referrals", ["to_institution"])
    for column in (
        sa.Column("kind", sa.Text, nullable=False, server_default="case"),
        sa.Column("service_id", sa.Text),
        sa.Column("forwarded_from", sa.Text),
        sa.Column("owner", sa.Text),
        sa.Column("legal_basis", sa.Text, nullable=False, server_default="statutory-duty"),
        sa.Column("consent", sa.JSON),
        sa.Column("deadlines", sa.JSON, nullable=False, server_default="{}"),
        sa.Column("do_not_contact", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ):
        op.add_column("referrals", column)
    op.create_table(
        "referral_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("referral_id", sa.Text, nullable=False, index=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("from_state", sa.Text, nullable=False),
        sa.Column("to_state", sa.Text, nullable=False),
        sa.Column("actor_institution", sa.Text),
        sa.Column("actor_person", sa.Text),
        sa.Column("owner", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("outcome", sa.Text),
        sa.Column("note", sa.Text),
    )
    op.create_table(
        "timers",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("referral_id", sa.Text, nullable=False, index=True),
        sa.Column("step", sa.Text, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_timers_pending", "timers", ["due_at"], postgresql_where=sa.text("fired_at IS NULL"))
    op.create_table(
        "cases",
        sa.Column("case_id", sa.Text, primary_key=True),
        sa.Column("lead", sa.Text, nullable=False),
        sa.Column("urgency", sa.Text, nullable=False),
        sa.Column("categories", sa.JSON, nullable=False),
        sa.Column("county", sa.Text, nullable=False),
        sa.Column("do_not_contact", sa.Boolean, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("lead_manager", sa.Text),
        sa.Column("participants", sa.JSON, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "services",
        sa.Column("service_id", sa.Text, primary_key=True),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("nomenclature_code", sa.Text),
        sa.Column("categories", sa.JSON, nullable=False),
        sa.Column("capacity", sa.Integer),
        sa.Column("occupancy", sa.Integer),
        sa.Column("waiting", sa.Integer),
        sa.Column("accepting", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("services", "cases", "timers", "referral_history"):
        op.drop_table(table)
    for column in ("updated_at", "do_not_contact", "deadlines", "consent", "legal_basis", "owner",
                   "forwarded_from", "service_id", "kind"):
        op.drop_column("referrals", column)
    op.drop_index("ix_referrals_to_institution", "referrals")
    op.drop_index("ix_referrals_case_id", "referrals")
    op.create_unique_constraint("referrals_case_id_key", "referrals", ["case_id"])
