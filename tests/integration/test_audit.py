"""The audit trail against a real database: every message exactly once, whatever the
redeliveries, even with two replicas appending at once, and the chain verifies."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from runtime.cloudevents import CloudEvent
from runtime.inbox import InboxConsumer, key_by_position
from services.audit import handlers
from services.audit.adapters.tables import audit_entries
from services.audit.bootstrap import institution_topics
from services.audit.domain import chain
from tests.integration.helpers import message, migrated_database

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "audit" / "migrations"


@pytest.fixture
async def audit(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "audit", MIGRATIONS)
    templates = institution_topics()

    async def handle(uow, msg):
        await handlers.append(uow, msg, templates)

    def replica() -> InboxConsumer:
        return InboxConsumer(service="audit", group_id="t", bootstrap="t", sessions=sessions,
                             handler=handle, message_key=key_by_position, attempts=1)
    yield replica, engine
    await engine.dispose()


def batch(topic: str, n: int, start: int = 0):
    return [message(topic, CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake",
                                          {"case_id": f"case-{i}"}), offset=i)
            for i in range(start, start + n)]


async def test_two_replicas_redelivering_overlapping_batches_record_each_message_once(audit):
    replica, engine = audit
    first, second = replica(), replica()
    cases, garbage = batch("punte.cases", 40), [message("punte.ingress.isj-bc", value=b"\x00not json", offset=0)]
    # A rebalance hands the same partition to both replicas for a moment.
    await asyncio.gather(first.process_with_retry(cases[:30] + garbage),
                         second.process_with_retry(cases[10:]))
    await first.process(cases)  # and the broker redelivers everything once more
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit_entries).order_by(audit_entries.c.seq))).all()
    assert [r.seq for r in rows] == list(range(1, 42)), "one gapless sequence"
    positions = [(r.topic, r.offset) for r in rows]
    assert len(set(positions)) == 41
    assert {r.institution for r in rows if r.topic == "punte.ingress.isj-bc"} == {"isj-bc"}
    assert {r.case_id for r in rows if r.topic == "punte.cases"} == {f"case-{i}" for i in range(40)}
    assert first.dead_lettered == second.dead_lettered == 0
    result = chain.verify((r.seq, r.entry, r.hash) for r in rows)
    assert result.verified and result.entries == 41


async def test_a_changed_entry_is_found_by_verification(audit):
    replica, engine = audit
    await replica().process(batch("punte.cases", 5))
    async with engine.begin() as conn:
        entry = await conn.scalar(sa.select(audit_entries.c.entry).where(audit_entries.c.seq == 3))
        await conn.execute(sa.update(audit_entries).where(audit_entries.c.seq == 3)
                           .values(entry=entry[:-2] + b" }"))
        rows = (await conn.execute(sa.select(audit_entries).order_by(audit_entries.c.seq))).all()
    result = chain.verify((r.seq, r.entry, r.hash) for r in rows)
    assert not result.verified and result.first_bad == 3
