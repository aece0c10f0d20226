"""A case's closure reaches intake (issue #11): its lead closes it in referral, intake hears
ro.punte.case.closed.v1 on punte.referrals, takes no new report into the closed case (a new
report of the child opens a new case) and schedules its erasure; a reopened case is open
again and its erasure cancelled. When the closed-case period is over intake erases what it
kept of the case: the identity versions its reports recorded, unless another case of the
child still needs the child's current identity. Refused reports go by their own rule; a
purge erases what each rule names and nothing else."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from runtime.cloudevents import CloudEvent
from runtime.data_keys import data_keys_table
from runtime.db import make_sessions
from runtime.inbox import InboxConsumer
from runtime.outbox import outbox_table
from runtime.retention import erasures_table
from runtime.signing import SigningKey, network_keyring
from services.intake import retention as intake_retention
from services.intake.adapters.tables import case_reports, cases, identities, reports
from tests.integration.helpers import (
    NETWORK_KEY,
    TEST_DATA_KEYS,
    case_closed,
    case_reopened,
    intake_consumer,
    keyring_of,
    message,
    positions,
    zero_day_schedule,
)

V2 = "ro.punte.report.submitted.v2"
COLONESTI = 21891
KEY = SigningKey.generate("isj-bc-1")
KEYRING = keyring_of({"isj-bc": KEY})
CHILD = {"cnp": "5150412041230", "uat_siruta": COLONESTI, "county": "BC"}
OTHER_CHILD = {"cnp": "6170903041234", "uat_siruta": COLONESTI, "county": "BC"}


def signed(categories: list[str], child: dict | None = None) -> CloudEvent:
    return KEY.sign(CloudEvent.new(V2, "/institutions/isj-bc", {
        "reporter": {"institution": "isj-bc", "role": "school-counsellor"}, "channel": "school",
        "child": child or CHILD, "risks": [{"category": c} for c in categories],
        "description": "Date sintetice."}))


@pytest.fixture
async def intake(infrastructure, tmp_path):
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    schedule = zero_day_schedule(tmp_path)

    async def on_referrals(uow, msg):
        await intake_retention.follow_closure(uow, msg, schedule)

    closures = InboxConsumer(service="intake", group_id="t", bootstrap="t", sessions=make_sessions(engine),
                             handler=on_referrals, attempts=1, network_keys=network_keyring(NETWORK_KEY),
                             data_keys=TEST_DATA_KEYS)
    yield consumer, closures, engine, schedule
    await engine.dispose()


async def send(consumer, event: CloudEvent, topic: str = "punte.ingress.isj-bc") -> None:
    await consumer.process([message(topic, event, offset=next(positions))])


async def case_of(engine, event: CloudEvent) -> sa.Row:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(cases).join(case_reports, case_reports.c.case_id == cases.c.case_id)
                                   .where(case_reports.c.report_id == event.id))).one()


async def purge(engine, schedule, now: datetime) -> int:
    async with make_sessions(engine)() as session, session.begin():
        return await intake_retention.purge(session, TEST_DATA_KEYS, schedule, now)


async def test_a_closed_case_takes_no_new_report_until_its_lead_reopens_it(intake):
    consumer, closures, engine, _ = intake
    first = signed(["neglect"])
    await send(consumer, first)
    case = await case_of(engine, first)
    closed_at = datetime.now(timezone.utc).replace(microsecond=0)
    await send(closures, case_closed(case.case_id, closed_at, case.lead), "punte.referrals")
    assert closures.dead_lettered == 0
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(cases).where(cases.c.case_id == case.case_id))).one()
        [due] = (await conn.execute(sa.select(erasures_table))).all()
    assert (row.status, row.closed_at, row.closed_by, row.closure_reason) == ("closed", closed_at, case.lead, "goals-met")
    assert (due.scope, due.rule, due.due_at) == (f"case:{case.case_id}", "closed-case", closed_at)

    later = signed(["neglect"])
    await send(consumer, later)
    assert (await case_of(engine, later)).case_id != case.case_id, "a new report opens a new case"

    await send(closures, case_reopened(case.case_id, closed_at + timedelta(minutes=1), case.lead), "punte.referrals")
    async with engine.connect() as conn:
        assert (await conn.scalar(sa.select(cases.c.status).where(cases.c.case_id == case.case_id))) == "open"
        assert (await conn.execute(sa.select(erasures_table))).all() == [], "the pending erasure is cancelled"


async def test_a_case_closed_by_anyone_but_the_network_is_not_closed(intake):
    consumer, closures, engine, _ = intake
    report = signed(["neglect"])
    await send(consumer, report)
    case = await case_of(engine, report)
    forged = SigningKey.generate("not-the-network").sign(case_closed(case.case_id, datetime.now(timezone.utc)))
    await send(closures, forged, "punte.referrals")
    assert closures.dead_lettered == 1
    async with engine.connect() as conn:
        assert (await conn.scalar(sa.select(cases.c.status).where(cases.c.case_id == case.case_id))) == "open"


async def test_a_purge_erases_a_closed_case_and_refused_reports_and_nothing_else(intake):
    consumer, closures, engine, schedule = intake
    closing, kept_for_the_child, other_child = signed(["neglect"]), signed(["bullying"]), signed(["neglect"], OTHER_CHILD)
    refused = signed(["no_such_category"])
    for event in (closing, kept_for_the_child, other_child, refused):
        await send(consumer, event)
    case = await case_of(engine, closing)
    assert (await case_of(engine, kept_for_the_child)).case_id != case.case_id, "another case of the same child"
    await send(closures, case_closed(case.case_id, datetime.now(timezone.utc), case.lead), "punte.referrals")
    async with engine.begin() as conn:  # the relay published every event but the last
        last = await conn.scalar(sa.select(sa.func.max(outbox_table.c.id)))
        await conn.execute(sa.update(outbox_table).where(outbox_table.c.id < last)
                           .values(published_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        versions_before = (await conn.execute(sa.select(identities.c.report_id).order_by(identities.c.version))).scalars().all()

    assert await purge(engine, schedule, datetime.now(timezone.utc) + timedelta(seconds=1)) > 0

    async with engine.connect() as conn:
        left_cases = set((await conn.execute(sa.select(cases.c.case_id))).scalars())
        left_reports = set((await conn.execute(sa.select(reports.c.event_id))).scalars())
        left_versions = (await conn.execute(sa.select(identities.c.report_id).order_by(identities.c.version))).scalars().all()
        held = set((await conn.execute(sa.select(case_reports.c.report_id))).scalars())
        outbox = (await conn.execute(sa.select(outbox_table.c.id, outbox_table.c.published_at))).all()
        erased = (await conn.execute(sa.select(data_keys_table.c.scope, data_keys_table.c.erased_rule)
                                     .where(data_keys_table.c.erased_at.is_not(None)))).all()
    assert case.case_id not in left_cases and len(left_cases) == 2, "only the closed case went"
    assert closing.id not in held and {kept_for_the_child.id, other_child.id} <= held
    assert left_reports >= {kept_for_the_child.id, other_child.id}
    assert closing.id not in left_reports and refused.id not in left_reports, "the closed case's and the refused answer went"
    # The closed case's account of the child goes; the child's other case keeps its own,
    # which is the child's current identity.
    assert versions_before == [closing.id, kept_for_the_child.id, other_child.id]
    assert left_versions == [kept_for_the_child.id, other_child.id]
    assert [r for r in outbox if r.published_at is not None] == [], "published outbox rows went"
    assert len(outbox) == 1, "the unpublished row stays"
    assert (f"case:{case.case_id}", "closed-case") in erased


async def test_the_last_case_of_a_child_takes_every_identity_version_with_it(intake):
    consumer, closures, engine, schedule = intake
    report = signed(["neglect"], OTHER_CHILD)
    await send(consumer, report)
    case = await case_of(engine, report)
    await send(closures, case_closed(case.case_id, datetime.now(timezone.utc), case.lead), "punte.referrals")
    await purge(engine, schedule, datetime.now(timezone.utc) + timedelta(seconds=1))
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(identities).where(identities.c.child_ref == case.child_ref))).all() == []
