"""Referral's and notification's purge jobs (issue #11, item 3): the lead closes a case in
referral (once, with a reason from the catalogue) and referral and notification schedule
the case's erasure at closed_at + the closed-case period (reopening cancels it); when it is due the
case's data key is destroyed and the rows each service keeps of the case are deleted;
delivery logs and published outbox rows go by age. With a 0-day schedule a purge erases
what each rule names and nothing else: other cases, pending deliveries and unpublished
outbox rows stay."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import sqlalchemy as sa

from contracts.reference import risk_categories
from runtime.data_keys import Erased, data_keys_table
from runtime.db import make_sessions
from runtime.inbox import InboxConsumer, UnitOfWork
from runtime.outbox import Outbox, outbox_table
from runtime.retention import erasures_table
from runtime.settings import Settings
from runtime.signing import SigningKey, network_keyring
from services.notification import handlers as notification_handlers
from services.notification import retention as notification_retention
from services.notification.adapters.deliveries import webhook_deliveries
from services.notification.adapters.tables import facts, inbox_entries, people_deliveries
from services.notification.domain.recipients import Recipients
from services.referral import handlers as referral_handlers
from services.referral import retention as referral_retention
from services.referral.adapters.tables import cases, history, referrals, timers
from services.referral.entrypoints import http as referral_http
from tests.integration.helpers import (
    NETWORK_KEY,
    TEST_DATA_KEYS,
    TEST_DATA_KEYS_SETTING,
    bearer,
    case_closed,
    case_opened,
    message,
    people_channels,
    positions,
    referral_config,
    referral_consumers,
    service_app,
    zero_day_schedule,
)

CLOSED_AT = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)


async def count(sessions, table, *where) -> int:
    async with sessions() as session:
        return await session.scalar(sa.select(sa.func.count()).select_from(table).where(*where)) or 0


# --- referral ----------------------------------------------------------------------------

async def test_the_lead_closes_a_case_once_and_referral_erases_it_when_due_and_nothing_else(infrastructure, tmp_path):
    _, engine = await referral_consumers(infrastructure.database_url, referral_config())
    sessions = make_sessions(engine)
    schedule = zero_day_schedule(tmp_path)
    config = referral_config()

    async def on_case(uow, msg):  # as the service wires it (bootstrap)
        await referral_handlers.follow_case(uow, msg, config)
        await referral_retention.note_report(uow, msg)

    consumer = InboxConsumer(service="referral", group_id="t", bootstrap="t", sessions=sessions, handler=on_case,
                             attempts=1, network_keys=network_keyring(NETWORK_KEY), data_keys=TEST_DATA_KEYS)
    app = service_app("referral", engine, referral_http.router,
                      settings=Settings(retention_file=tmp_path / "retention-0-days.yaml",
                                        data_keys=TEST_DATA_KEYS_SETTING))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://referral.test")
    lead = bearer("dgaspc-bc", "cm.ana")
    try:
        for event in (case_opened("case-1"), case_opened("case-2")):
            await consumer.process([message("punte.cases", event, offset=next(positions))])
        [plan] = (await client.get("/v1/cases/case-1", headers=lead)).json()["plan"]
        await client.post(f"/v1/referrals/{plan['referral_id']}/commands",
                          json={"command": "reject", "reason": "not-competent"}, headers=lead)
        unknown = await client.post("/v1/cases/case-1/close", json={"reason": "bored"}, headers=lead)
        assert unknown.status_code == 422 and unknown.json()["detail"]["code"] == "UNKNOWN_CLOSURE_REASON"
        system = await client.post("/v1/cases/case-1/close", headers=bearer("dgaspc-bc", "sys", "institution-system"))
        assert system.status_code == 403, "people close cases, not systems"
        closed = await client.post("/v1/cases/case-1/close", json={"reason": "risk-not-confirmed"}, headers=lead)
        assert closed.status_code == 200 and closed.json()["status"] == "closed"
        again = await client.post("/v1/cases/case-1/close", json={"reason": "goals-met"}, headers=lead)
        assert again.status_code == 409 and again.json()["detail"]["code"] == "CASE_ALREADY_CLOSED"
        [(key, data)] = [(k, d) for k, d in await _published(engine, "ro.punte.case.closed.v1")]
        assert key == b"case-1" and set(data) == {"case_id", "closed_at", "closed_by", "reason", "report_ids"}
        assert (data["case_id"], data["closed_by"], data["reason"], data["report_ids"]) == (
            "case-1", "dgaspc-bc", "risk-not-confirmed", ["r-1"])
        async with sessions() as session:
            [due] = (await session.execute(sa.select(erasures_table))).all()
        assert (due.scope, due.rule) == ("case:case-1", "closed-case")

        # Reopened, the case's erasure is cancelled; closed again, scheduled again.
        reopened = await client.post("/v1/cases/case-1/reopen", headers=lead)
        assert reopened.status_code == 200 and reopened.json()["status"] == "open"
        assert [d["case_id"] for _, d in await _published(engine, "ro.punte.case.reopened.v1")] == ["case-1"]
        assert await count(sessions, erasures_table) == 0
        not_closed = await client.post("/v1/cases/case-1/reopen", headers=lead)
        assert not_closed.status_code == 409 and not_closed.json()["detail"]["code"] == "CASE_NOT_CLOSED"
        assert (await client.post("/v1/cases/case-1/close", headers=lead)).status_code == 200  # the default reason
        referral_ids = {r: c for r, c in (await _referrals(sessions))}
        assert set(referral_ids.values()) == {"case-1", "case-2"}

        async with sessions() as session, session.begin():
            assert await referral_retention.purge(session, TEST_DATA_KEYS, schedule,
                                                  datetime.now(timezone.utc) + timedelta(seconds=1)) > 0
        assert await count(sessions, cases, cases.c.case_id == "case-1") == 0
        assert await count(sessions, referrals, referrals.c.case_id == "case-1") == 0
        first = [r for r, c in referral_ids.items() if c == "case-1"]
        assert await count(sessions, history, history.c.referral_id.in_(first)) == 0
        assert await count(sessions, timers, timers.c.referral_id.in_(first)) == 0
        assert await count(sessions, cases, cases.c.case_id == "case-2") == 1
        assert await count(sessions, referrals, referrals.c.case_id == "case-2") == 1
        async with sessions() as session:
            [key] = (await session.execute(sa.select(data_keys_table))).all()
        assert (key.scope, key.erased_rule, key.wrapped) == ("case:case-1", "closed-case", None)
        # Nothing new is sealed into an erased case (a straggling note finds it erased).
        async with sessions() as session:
            with pytest.raises(Erased):
                await TEST_DATA_KEYS.keys_for(session, ["case:case-1"], datetime.now(timezone.utc))
        # The outbox rows were never published: they stay.
        assert await count(sessions, outbox_table) > 0
        gone = await client.post("/v1/cases/case-1/reopen", headers=lead)
        assert gone.status_code == 404, "an erased case is gone"
    finally:
        await client.aclose()
        await engine.dispose()


async def _published(engine, event_type: str) -> list[tuple[bytes, dict]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox_table.c.topic, outbox_table.c.key, outbox_table.c.payload)
                                   .where(outbox_table.c.event_type == event_type))).all()
    assert {r.topic for r in rows} <= {"punte.referrals"}
    return [(r.key, json.loads(r.payload)) for r in rows]


async def _referrals(sessions) -> list[tuple[str, str]]:
    async with sessions() as session:
        return [tuple(r) for r in (await session.execute(sa.select(referrals.c.referral_id, referrals.c.case_id))).all()]


# --- notification ------------------------------------------------------------------------

# The informed institution of helpers.case_opened hears of each case by e-mail and webhook.
RECIPIENTS = {
    "institutions": {
        "spas-colonesti": {"channels": ["email"], "team_email": "echipa@spas-colonesti.example.invalid",
                           "webhook": "http://127.0.0.1:9/punte"},
    },
    "people": {"cm.spas-colonesti": {"institution": "spas-colonesti",
                                     "email": "caz@spas-colonesti.example.invalid"}},
}


async def test_notification_erases_a_closed_cases_notices_and_old_logs_and_nothing_else(notification_database, tmp_path):
    engine, sessions = notification_database
    schedule = zero_day_schedule(tmp_path)
    config = notification_handlers.Config(
        labels=risk_categories(), recipients=Recipients.model_validate(RECIPIENTS),
        channels=people_channels(9, tmp_path / "sms.jsonl"), network_key=SigningKey.generate("network-test"))
    for event in (case_opened("case-1", lead="dgaspc-bc"), case_opened("case-2", lead="dgaspc-bc"),
                  case_closed("case-1", CLOSED_AT)):
        async with sessions() as session, session.begin():
            uow = UnitOfWork(session, Outbox(session, None), "/punte/notification")
            msg = message("punte.referrals" if event.type == "ro.punte.case.closed.v1" else "punte.cases", event,
                          offset=next(positions))
            if event.type == "ro.punte.case.closed.v1":
                await notification_retention.follow_closure(uow, msg, schedule)
            else:
                await notification_handlers.notify(uow, msg, config)
            await uow.outbox.flush()
    first = set((await _notices(sessions, "case-1")))
    second = set((await _notices(sessions, "case-2")))
    assert first and second
    assert await count(sessions, webhook_deliveries, webhook_deliveries.c.notification_id.in_(first)) > 0
    # case-2's webhook was delivered and one of its e-mails sent long ago: the logs' rules take them.
    long_ago = datetime.now(timezone.utc) - timedelta(minutes=5)
    async with engine.begin() as conn:
        await conn.execute(sa.update(webhook_deliveries).where(webhook_deliveries.c.notification_id.in_(second))
                           .values(status="delivered", delivered_at=long_ago))
        sent = await conn.scalar(sa.select(sa.func.min(people_deliveries.c.id))
                                 .where(people_deliveries.c.notification_id.in_(second)))
        await conn.execute(sa.update(people_deliveries).where(people_deliveries.c.id == sent)
                           .values(status="sent", sent_at=long_ago))
    pending_mails = await count(sessions, people_deliveries, people_deliveries.c.notification_id.in_(second),
                                people_deliveries.c.status == "pending")

    async with sessions() as session, session.begin():
        assert await notification_retention.purge(session, TEST_DATA_KEYS, schedule, datetime.now(timezone.utc)) > 0
    assert await _notices(sessions, "case-1") == []
    for table in (people_deliveries, webhook_deliveries):
        assert await count(sessions, table, table.c.notification_id.in_(first)) == 0
    assert await count(sessions, facts, facts.c.case_id == "case-1") == 0
    assert set(await _notices(sessions, "case-2")) == second, "the open case's inbox stays"
    assert await count(sessions, facts, facts.c.case_id == "case-2") > 0
    assert await count(sessions, webhook_deliveries, webhook_deliveries.c.notification_id.in_(second)) == 0
    assert await count(sessions, people_deliveries, people_deliveries.c.notification_id.in_(second)) == pending_mails
    assert pending_mails > 0, "pending e-mails stay until sent"
    assert await count(sessions, outbox_table) > 0, "unpublished outbox rows stay"
    async with sessions() as session:
        erasure = (await session.execute(sa.select(erasures_table))).one()
    assert (erasure.scope, erasure.rule) == ("case:case-1", "closed-case") and erasure.done_at is not None


async def _notices(sessions, case_id: str) -> list[str]:
    async with sessions() as session:
        return list((await session.execute(sa.select(inbox_entries.c.notification_id)
                                           .where(inbox_entries.c.case_id == case_id))).scalars())
