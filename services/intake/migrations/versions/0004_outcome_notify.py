"""Intake: recording a report's answer wakes the HTTP gateway's waiting requests from the
database itself (a trigger's NOTIFY on punte_outcome, the message key as payload), so the
consumer spends no statement per message on it. A key too long for a notification (8000
bytes) is not announced: its waiters find it on their re-check.

Revision ID: 0004
"""
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION punte_announce_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF octet_length(NEW.message_key) < 8000 THEN
                PERFORM pg_notify('punte_outcome', NEW.message_key);
            END IF;
            RETURN NULL;
        END $$""")
    op.execute("""
        CREATE TRIGGER reports_announce_outcome AFTER INSERT ON reports
        FOR EACH ROW EXECUTE FUNCTION punte_announce_outcome()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER reports_announce_outcome ON reports")
    op.execute("DROP FUNCTION punte_announce_outcome()")
