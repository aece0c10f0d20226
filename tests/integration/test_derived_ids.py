"""Deterministic identities (ADR 0023): a message processed again in a fresh unit of work,
as after a restore from backup, a replay or a batch re-applied after a crash, gives rise to
the same events under the same ids, so every next consumer's inbox drops the repeats; and
what leaves the network for people and systems carries the same idempotency key again."""
from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from contracts.events import EventType
from contracts.reference import risk_categories
from runtime.cloudevents import CloudEvent
from runtime.db import make_sessions
from runtime.inbox import InboxConsumer, UnitOfWork
from runtime.outbox import Outbox
from runtime.signing import SigningKey
from services.audit import handlers as audit_handlers
from services.notification import handlers as notification_handlers
from services.notification.adapters.deliveries import webhook_deliveries
from services.notification.channels.people import send_due
from services.notification.domain.recipients import Recipients
from services.referral import handlers as referral_handlers
from services.referral.adapters.tables import referrals
from tests.integration.helpers import (
    NOTIFICATION_MIGRATIONS,
    T0,
    audit_trail,
    case_opened,
    emitted,
    intake_consumer,
    keyring_of,
    message,
    migrated_database,
    people_channels,
    referral_config,
    referral_consumers,
)

SCHOOL = "isj-bc"
KEYS = {i: SigningKey.generate(f"{i}-1") for i in (SCHOOL, "dgaspc-bc")}
KEYRING = keyring_of(KEYS)


def _report() -> dict:
    return {"reporter": {"institution": SCHOOL, "role": "school-counsellor"}, "channel": "school",
            "child": {"cnp": "5150412041230", "uat_siruta": 21891}, "categories": ["school_absenteeism"],
            "description": "Absențe repetate (date sintetice)."}


def _signed(data: dict, sender: str = SCHOOL, type_: str = "ro.punte.report.submitted.v1") -> CloudEvent:
    return KEYS[sender].sign(CloudEvent.new(type_, f"/institutions/{sender}", data))


async def identities(engine) -> list[tuple[str, str, str]]:
    """(topic, type, id) of every event a service wrote, in order."""
    return [(topic, headers["ce_type"], headers["ce_id"]) for topic, headers, _ in await emitted(engine)]


async def test_a_report_applied_again_to_a_restored_intake_gives_the_same_events_and_case(infrastructure):
    first_report, joining, refused = _signed(_report()), _signed(_report()), _signed({**_report(), "categories": []})
    runs = []
    for _ in range(2):  # the second database is the first one restored from before the reports
        consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
        try:
            for offset, event in enumerate((first_report, joining, refused)):
                await consumer.process([message(f"punte.ingress.{SCHOOL}", event, offset=offset)])
            out = await emitted(engine)
            cases = [([(k, v.encode()) for k, v in h.items()], json.dumps(d).encode())
                     for topic, h, d in out if topic == "punte.cases"]
            runs.append((await identities(engine), [d.get("case_id") for _, _, d in out], cases))
        finally:
            await engine.dispose()
    (ids, case_ids, published), (again, case_ids_again, published_again) = runs
    assert {t for _, t, _ in ids} == {"ro.punte.case.opened.v1", "ro.punte.case.report-added.v1",
                                      "ro.punte.outcome.v1", "ro.punte.deadletter.v2"}
    assert again == ids
    assert case_ids_again == case_ids, "the case opened again is the same case"
    assert len({i for *_, i in ids}) == len(ids), "one cause, one id per step"

    # The next consumer (keyed by event id, as referral and notification are) applies each
    # case event once, though both runs published theirs.
    engine, sessions = await migrated_database(infrastructure.database_url, "notification", NOTIFICATION_MIGRATIONS)
    applied: list[str] = []

    async def record(uow, msg) -> None:
        applied.append(msg.header("ce_id"))

    try:
        downstream = InboxConsumer(service="next", group_id="t", bootstrap="t", sessions=sessions, handler=record)
        await downstream.process([message("punte.cases", value=value, headers=headers, offset=offset)
                                  for offset, (headers, value) in enumerate(published + published_again)])
    finally:
        await engine.dispose()
    assert len(applied) == len(published) == 2 and downstream.duplicates == 2


@asynccontextmanager
async def at(sessions, when):
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session, Outbox(session), "/punte/referral", now=when)
        yield uow
        await uow.outbox.flush()


async def test_a_case_and_commands_applied_again_to_a_restored_referral_give_the_same_events(infrastructure):
    config = referral_config(keyring_of(KEYS))
    opened = case_opened(case_id="case-ids", urgency="P0", lead="dgaspc-bc")
    acknowledged = _signed({"referral_id": referral_handlers._id("case-ids"), "command": "acknowledge",
                            "note": "Am preluat (date sintetice)."}, "dgaspc-bc", "ro.punte.referral.command.v1")
    runs = []
    for _ in range(2):
        consumers, engine = await referral_consumers(infrastructure.database_url, config)
        try:
            await consumers["cases"].process([message("punte.cases", opened, offset=0)])
            await consumers["commands"].process([message("punte.ingress.dgaspc-bc", acknowledged, offset=0)])

            async with engine.connect() as conn:
                requested_at = await conn.scalar(sa.select(referrals.c.requested_at))

            sessions = make_sessions(engine)
            for minutes in (70, 250, 24 * 60):  # overdue, escalated, then returned unanswered
                async with at(sessions, requested_at + timedelta(minutes=minutes)) as uow:
                    await referral_handlers.fire_due_timers(uow, config)
            out = await emitted(engine)
            runs.append((await identities(engine), [d.get("note_id") for _, _, d in out]))
        finally:
            await engine.dispose()
    (ids, notes), (again, notes_again) = runs
    assert {"ro.punte.referral.requested.v1", "ro.punte.referral.transitioned.v1",
            "ro.punte.referral.overdue.v1", "ro.punte.outcome.v1"} <= {t for _, t, _ in ids}
    assert again == ids
    assert notes_again == notes and any(notes), "the note is the same note"
    assert len({i for *_, i in ids}) == len(ids)


async def test_a_checkpoint_issued_again_for_the_same_tree_has_the_same_id(infrastructure):
    log = audit_handlers.Log("punte.test/audit", SigningKey.generate("punte.test/audit-1"))
    migrations = Path(__file__).resolve().parents[2] / "services" / "audit" / "migrations"
    trail, runs = audit_trail(), []
    events = [CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake", {"case_id": f"case-{i}"})
              for i in range(3)]
    for _ in range(2):
        engine, sessions = await migrated_database(infrastructure.database_url, "audit", migrations)
        try:
            for offset, event in enumerate(events):
                async with sessions() as session, session.begin():
                    uow = UnitOfWork(session, Outbox(session), "/punte/audit")
                    await audit_handlers.append(uow, message("punte.cases", event, offset=offset), trail=trail)
            async with sessions() as session, session.begin():
                uow = UnitOfWork(session, Outbox(session), "/punte/audit")
                await audit_handlers.issue_checkpoint(uow, log)
                await uow.outbox.flush()
            runs.append(await identities(engine))
        finally:
            await engine.dispose()
    assert runs[0] == runs[1] and len(runs[0]) == 1


RECIPIENTS = {
    "institutions": {"dgaspc-bc": {
        "channels": ["email", "sms"], "webhook": "http://127.0.0.1:9/punte", "ack_minutes": 10,
        "on_call": [{"person": "cm.dgaspc-bc", "from": "2026-01-01T00:00:00+02:00",
                     "to": "2036-01-01T00:00:00+02:00"}]}},
    "people": {"cm.dgaspc-bc": {"institution": "dgaspc-bc", "email": "caz@dgaspc-bc.example.invalid",
                                "phone": "+40700000001"}},
}


async def test_a_notice_sent_again_after_a_restore_carries_the_same_message_id_sms_key_and_webhook_id(
        infrastructure, smtp, tmp_path):
    controller, collector = smtp
    network = SigningKey.generate("network-test")
    config = notification_handlers.Config(
        labels=risk_categories(), recipients=Recipients.model_validate(RECIPIENTS),
        channels=people_channels(controller.port, tmp_path / "sms.jsonl"), network_key=network,
        county_dgaspc={"dgaspc-bc": "dgaspc-bc"})
    requested = CloudEvent.new(EventType.REFERRAL_REQUESTED.value, "/punte/referral", {
        "referral_id": "ref-1", "case_id": "case-1", "referrer": "isj-bc", "to": "dgaspc-bc",
        "urgency": "P0", "categories": ["physical_abuse"], "requested_at": T0.isoformat(),
        "deadlines": {"acknowledge": (T0 + timedelta(hours=1)).isoformat()}, "do_not_contact": False})
    hooks = []
    for _ in range(2):  # the second time, the notification database restored from before the event
        engine, sessions = await migrated_database(infrastructure.database_url, "notification",
                                                   NOTIFICATION_MIGRATIONS)
        try:
            async with sessions() as session, session.begin():
                uow = UnitOfWork(session, Outbox(session, None), "/punte/notification", T0)
                await notification_handlers.notify(uow, message("punte.referrals", requested), config)
                await uow.outbox.flush()
            async with sessions() as session:
                await send_due(session, config.channels, T0)
            async with engine.connect() as conn:
                hooks.append((await conn.execute(sa.select(webhook_deliveries.c.headers))).scalar_one())
        finally:
            await engine.dispose()
    mails = [msg["Message-ID"] for _, _, msg in collector.received]
    assert len(mails) == 2 and mails[0] == mails[1], "the receiver can drop the repeat"
    sms = [json.loads(line) for line in (tmp_path / "sms.jsonl").read_text().splitlines()]
    assert len(sms) == 2 and sms[0]["idempotency_key"] == sms[1]["idempotency_key"]
    assert hooks[0]["webhook-id"] == hooks[1]["webhook-id"] == hooks[0]["ce-id"]
