"""Referral's tables (its own database)."""
import sqlalchemy as sa

metadata = sa.MetaData()

referrals = sa.Table(
    "referrals", metadata,
    sa.Column("referral_id", sa.Text, primary_key=True),
    sa.Column("case_id", sa.Text, nullable=False, index=True),
    sa.Column("referrer", sa.Text, nullable=False),
    sa.Column("to_institution", sa.Text, nullable=False, index=True),
    sa.Column("urgency", sa.Text, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("accepted_at", sa.DateTime(timezone=True)),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("service_id", sa.Text),
    sa.Column("forwarded_from", sa.Text),
    sa.Column("owner", sa.Text),
    sa.Column("legal_basis", sa.Text, nullable=False),
    sa.Column("consent", sa.JSON),
    sa.Column("deadlines", sa.JSON, nullable=False),
    sa.Column("do_not_contact", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.Text),  # the outcome code of a completed referral
)

# Every step of every referral: who, when, from what to what, why.
history = sa.Table(
    "referral_history", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("referral_id", sa.Text, nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("from_state", sa.Text, nullable=False),
    sa.Column("to_state", sa.Text, nullable=False),
    sa.Column("actor_institution", sa.Text),
    sa.Column("actor_person", sa.Text),
    sa.Column("owner", sa.Text),
    sa.Column("reason", sa.Text),  # a code of referral-reasons.yaml
    sa.Column("outcome", sa.Text),
    sa.Column("note", sa.Text),  # before issue #11 only: sealed into notes at start, then emptied
    sa.Column("note_id", sa.Text),  # the note this step added (notes)
)

# Notes and feedback on a referral: free text, part of the case file. Sealed under the
# case's data key (scope "case:<case_id>", runtime.data_keys), so erasing the case erases
# them; only referral's API opens them, for readers with a full view.
notes = sa.Table(
    "referral_notes", metadata,
    sa.Column("note_id", sa.Text, primary_key=True),
    sa.Column("referral_id", sa.Text, nullable=False, index=True),
    sa.Column("case_id", sa.Text, nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("command", sa.Text, nullable=False),  # the step that added it (or "request")
    sa.Column("author_institution", sa.Text),
    sa.Column("author_person", sa.Text),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
)

# Durable deadlines: a row per step, fired once by whichever replica gets to it.
timers = sa.Table(
    "timers", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("referral_id", sa.Text, nullable=False, index=True),
    sa.Column("step", sa.Text, nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("fired_at", sa.DateTime(timezone=True)),
)

# Referral's view of a case: who leads, the plan (its referrals), open or closed.
cases = sa.Table(
    "cases", metadata,
    sa.Column("case_id", sa.Text, primary_key=True),
    sa.Column("lead", sa.Text, nullable=False),
    sa.Column("urgency", sa.Text, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("county", sa.Text, nullable=False),
    sa.Column("do_not_contact", sa.Boolean, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("lead_manager", sa.Text),
    sa.Column("participants", sa.JSON, nullable=False),
    # Institutions that reported the case: not participants by that alone.
    sa.Column("reporters", sa.JSON, nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
)

# The service directory: seeded from contracts/reference/services.csv, kept current by
# the providers' service.updated events.
services = sa.Table(
    "services", metadata,
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

# Every referral command an institution sent, with the outcome it got.
commands = sa.Table(
    "commands", metadata,
    sa.Column("message_key", sa.Text, primary_key=True),
    sa.Column("event_type", sa.Text),
    sa.Column("sender", sa.Text),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("reason_code", sa.Text),
)
