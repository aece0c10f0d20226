"""Referral's cases consumer is batch-first (issue #14, item 2; decision 0033): a polled
batch of cases opened is referred to their leads with a constant number of statements, in
order with the other case events, each referral once. On the real PostgreSQL."""
from __future__ import annotations

import sqlalchemy as sa

from contracts.events import EventType
from runtime.cloudevents import CloudEvent
from services.referral.adapters.tables import cases, referrals, timers
from tests.integration.helpers import (
    NETWORK_KEY,
    T0,
    Statements,
    case_opened,
    emitted,
    message,
    of_type,
    referral_config,
    referral_consumers,
)


def report_added(case_id: str, urgency: str) -> CloudEvent:
    return NETWORK_KEY.sign(CloudEvent.new(EventType.CASE_REPORT_ADDED.value, "/punte/intake", {
        "case_id": case_id, "report_id": f"r-{case_id}-2", "categories": ["neglect", "abuse-physical"],
        "new_categories": ["abuse-physical"], "urgency": urgency, "lead": "dgaspc-bc",
        "reporter": {"institution": "dsp-bc", "role": "community-nurse"}, "received_at": T0.isoformat(),
    }, subject=case_id))


async def test_a_batch_of_cases_is_referred_with_one_insert_per_table_per_run(infrastructure):
    consumers, engine = await referral_consumers(infrastructure.database_url, referral_config())
    try:
        batch = [message("punte.cases", case_opened(f"case-{n}", urgency="P0" if n % 3 == 0 else "P2"), offset=n)
                 for n in range(20)]
        # A report joins case-4 in the same batch, after it was opened: it applies after.
        batch.insert(10, message("punte.cases", report_added("case-4", "P1"), offset=100))
        with Statements(engine) as statements:
            await consumers["cases"].process(batch)
        # Two runs of cases opened (before and after the report): one insert per table each.
        tables = [s.split()[2] for s in statements.starting("INSERT INTO")]
        assert [tables.count(t) for t in ("cases", "referrals", "timers")] == [2, 2, 2]
        async with engine.connect() as conn:
            referred = (await conn.execute(sa.select(referrals.c.case_id, referrals.c.legal_basis)
                                           .order_by(referrals.c.case_id))).all()
            case_4 = (await conn.execute(sa.select(cases.c.urgency, cases.c.categories)
                                         .where(cases.c.case_id == "case-4"))).one()
            with_timers = await conn.scalar(sa.select(sa.func.count(sa.distinct(timers.c.referral_id))))
        assert len(referred) == 20 and with_timers == 20
        assert dict(referred)["case-0"] == "statutory-duty" and dict(referred)["case-1"] == "consent-pending"
        assert case_4.urgency == "P1" and "abuse-physical" in case_4.categories
        requested = of_type(await emitted(engine), EventType.REFERRAL_REQUESTED.value)
        assert sorted(r["case_id"] for r in requested) == sorted(f"case-{n}" for n in range(20))

        # The same cases again (a replayed outbox, new positions): nothing twice.
        again = [message("punte.cases", case_opened(f"case-{n}"), offset=200 + n) for n in range(20)]
        await consumers["cases"].process(again)
        assert len(of_type(await emitted(engine), EventType.REFERRAL_REQUESTED.value)) == 20
    finally:
        await engine.dispose()
