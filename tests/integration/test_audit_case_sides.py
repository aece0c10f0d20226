"""The audit trail's record of who leads and who takes part in each case (consumer group
punte-audit-cases) is batch-first (decision 0033): a polled batch of cases opened and
referrals is written in a few statements, and a referral polled before its case (another
topic, another partition) still adds its institution. On the real PostgreSQL."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from contracts.events import EventType
from runtime.cloudevents import CloudEvent
from runtime.inbox import InboxConsumer
from services.audit.adapters.privacy import case_sides
from services.audit.entrypoints import privacy
from tests.integration.helpers import NETWORK_KEY, Statements, case_opened, message, migrated_database

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "audit" / "migrations"


def referral_requested(case_id: str, to: str) -> CloudEvent:
    return NETWORK_KEY.sign(CloudEvent.new(EventType.REFERRAL_REQUESTED.value, "/punte/referral", {
        "referral_id": f"ref-{case_id}-{to}", "case_id": case_id, "referrer": "isj-bc", "to": to,
        "urgency": "P2", "categories": ["neglect"], "requested_at": "2026-11-30T06:00:00+00:00",
        "deadlines": {}, "do_not_contact": False}, subject=case_id))


async def test_a_batch_of_cases_and_referrals_is_recorded_in_a_few_statements(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "audit", MIGRATIONS)
    consumer = InboxConsumer(service="audit", group_id="t", bootstrap="t", sessions=sessions,
                             handler=privacy.follow_case, batch_handler=privacy.follow_cases)
    try:
        # The referral to das-bacau of case-0 is polled before case-0 itself.
        batch = [message("punte.referrals", referral_requested("case-0", "das-bacau"), offset=0)]
        batch += [message("punte.cases", case_opened(f"case-{n}"), offset=n) for n in range(10)]
        batch += [message("punte.referrals", referral_requested(f"case-{n}", "dsp-bc"), offset=10 + n)
                  for n in range(10)]
        batch += [message("punte.referrals", referral_requested("case-3", "dgaspc-bc"), offset=30)]  # the lead
        with Statements(engine) as statements:
            await consumer.process(batch)
        async with engine.connect() as conn:
            sides = {r.case_id: (r.lead, r.participants) for r in (await conn.execute(sa.select(case_sides))).all()}
        assert sides["case-0"] == ("dgaspc-bc", ["dgaspc-bc", "spas-colonesti", "das-bacau", "dsp-bc"])
        assert sides["case-3"] == ("dgaspc-bc", ["dgaspc-bc", "spas-colonesti", "dsp-bc"]), "the lead once"
        assert len(sides) == 10
        # Beside the inbox's own (its check, the savepoint; its keys go by COPY): one insert of cases,
        # one read of them and one update of the changed ones.
        handler = [s for s in statements.kinds() if s in ("INSERT", "SELECT", "UPDATE")]
        assert handler.count("UPDATE") == 1 and handler.count("INSERT") == 1 and handler.count("SELECT") == 2
    finally:
        await engine.dispose()
