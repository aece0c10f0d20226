"""Notification's tables (its own database)."""
import sqlalchemy as sa

metadata = sa.MetaData()

# What each institution's people see in their inbox; one row per notice delivered.
inbox_entries = sa.Table(
    "inbox_entries", metadata,
    sa.Column("notification_id", sa.Text, primary_key=True),
    sa.Column("institution", sa.Text, nullable=False, index=True),
    sa.Column("case_id", sa.Text, nullable=False),
    sa.Column("referral_id", sa.Text, nullable=True, index=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("urgency", sa.Text, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("summary_ro", sa.Text, nullable=False),
    sa.Column("summary_en", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("do_not_contact", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("acknowledged_by", sa.Text, nullable=True),  # the person (token subject)
    sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),  # the next step's due time
    # What e-mails say: as the summaries, but special categories are not named.
    sa.Column("mail_summary_ro", sa.Text, nullable=True),
    sa.Column("mail_summary_en", sa.Text, nullable=True),
)

# E-mails and SMS to people: the queue the sender polls and the delivery status of each.
people_deliveries = sa.Table(
    "people_deliveries", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("notification_id", sa.Text, nullable=False, index=True),
    sa.Column("institution", sa.Text, nullable=False),
    sa.Column("person", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),  # email | sms
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("purpose", sa.Text, nullable=False),  # notice | digest | alert
    sa.Column("round", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),  # pending | sent | failed
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("provider_id", sa.Text, nullable=True),  # Message-ID or the SMS gateway's id
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("notification_id", "person", "channel", "purpose", "round",
                        name="uq_people_deliveries_once"),
)

# A P0 notice someone must acknowledge: who holds it now (level 0 on call, 1 supervisor,
# 2 county coordinator), how many times it was sent at that level, when to look again.
alerts = sa.Table(
    "alerts", metadata,
    sa.Column("notification_id", sa.Text, primary_key=True),
    sa.Column("institution", sa.Text, nullable=False),
    sa.Column("level", sa.Integer, nullable=False, server_default="0"),
    sa.Column("round", sa.Integer, nullable=False, server_default="0"),  # sends at this level
    sa.Column("sends", sa.Integer, nullable=False, server_default="0"),  # sends in all
    sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),  # None: nothing more to do
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
)

# The case manager holding each referral (from its transitions): updates go to them.
referral_owners = sa.Table(
    "referral_owners", metadata,
    sa.Column("referral_id", sa.Text, primary_key=True),
    sa.Column("owner", sa.Text, nullable=False),
)

# A person's own choices, within what their institution allows.
preferences = sa.Table(
    "preferences", metadata,
    sa.Column("person", sa.Text, primary_key=True),
    sa.Column("channels", sa.JSON, nullable=False),
    sa.Column("digest", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# The whole facts of each case (subject_id = case id) and referral (subject_id = referral
# id), from case.opened and referral.requested: later notices take urgency, categories and
# the lead from here, never from an inbox entry (which holds one recipient's view).
facts = sa.Table(
    "facts", metadata,
    sa.Column("subject_id", sa.Text, primary_key=True),
    sa.Column("case_id", sa.Text, nullable=False),
    sa.Column("urgency", sa.Text, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("do_not_contact", sa.Boolean, nullable=False),
    sa.Column("lead", sa.Text, nullable=True),  # the institution first asked to take the case
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_facts_case", "case_id", "created_at"),
)
