"""From a referral event to the people who must hear of it, against real PostgreSQL, a real
SMTP server (aiosmtpd) and the file SMS provider: P0 alerts on every channel of the on-call
person, re-sent and escalated on an injected clock until acknowledged; P2/P3 in one digest;
redelivered events tell nobody twice; webhooks queued for an institution's system."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from contracts.events import EventType
from contracts.reference import risk_categories
from punte.mailbox import messages as mailbox_messages
from runtime.cloudevents import CloudEvent
from runtime.inbox import UnitOfWork
from runtime.outbox import Outbox
from runtime.signing import SigningKey
from services.notification import handlers
from services.notification.adapters import alerting
from services.notification.adapters.deliveries import webhook_deliveries
from services.notification.adapters.tables import alerts, inbox_entries, people_deliveries, preferences
from services.notification.channels.email import SmtpSender
from services.notification.channels.people import send_due
from services.notification.domain.recipients import Recipients
from tests.integration.helpers import Statements, emitted, message, people_channels

ZONE = ZoneInfo("Europe/Bucharest")
# Monday 11:00 in Bucharest.
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
CNP = re.compile(r"(?<!\d)[1-9]\d{12}(?!\d)")

RECIPIENTS = {
    "institutions": {
        "dgaspc-bc": {
            "channels": ["email", "sms"], "team_email": "echipa@dgaspc-bc.example.invalid",
            "quiet_hours": {"start": "22:00", "end": "07:00"}, "digest_minutes": 60, "ack_minutes": 10,
            "resends": 1, "supervisors": ["sup.dgaspc-bc"], "coordinators": ["coord.dgaspc-bc"],
            "webhook": "http://127.0.0.1:9/punte",
            "on_call": [{"person": "cm.dgaspc-bc", "from": "2026-11-01T00:00:00+02:00",
                         "to": "2026-12-01T00:00:00+02:00"}],
        },
        "das-bacau": {"channels": ["email"]},
    },
    "people": {
        "cm.dgaspc-bc": {"institution": "dgaspc-bc", "email": "caz@dgaspc-bc.example.invalid",
                         "phone": "+40700000001"},
        "sup.dgaspc-bc": {"institution": "dgaspc-bc", "role": "supervisor", "email": "sef@dgaspc-bc.example.invalid",
                          "phone": "+40700000002", "channels": ["email", "sms"]},
        "coord.dgaspc-bc": {"institution": "dgaspc-bc", "role": "coordinator",
                            "email": "coordonator@dgaspc-bc.example.invalid", "phone": "+40700000003"},
        "cm2.dgaspc-bc": {"institution": "dgaspc-bc", "email": "caz2@dgaspc-bc.example.invalid"},
        "cm.das-bacau": {"institution": "das-bacau", "email": "caz@das-bacau.example.invalid"},
    },
}


@pytest.fixture
def sessions(notification_database):
    return notification_database[1]


@pytest.fixture
def config(smtp, tmp_path) -> handlers.Config:
    controller, _ = smtp
    channels = people_channels(controller.port, tmp_path / "sms.jsonl")
    return handlers.Config(labels=risk_categories(), recipients=Recipients.model_validate(RECIPIENTS),
                           channels=channels, network_key=SigningKey.generate("network-test"),
                           county_dgaspc={"dgaspc-bc": "dgaspc-bc", "das-bacau": "dgaspc-bc"})


def requested(urgency: str, referral_id: str = "ref-1", case_id: str = "case-1", to: str = "dgaspc-bc",
              event_id: str | None = None) -> CloudEvent:
    return CloudEvent.new(EventType.REFERRAL_REQUESTED.value, "/punte/referral", {
        "referral_id": referral_id, "case_id": case_id, "referrer": "isj-bc", "to": to,
        "urgency": urgency, "categories": ["physical_abuse"], "requested_at": T0.isoformat(),
        "deadlines": {"acknowledge": (T0 + timedelta(hours=1)).isoformat()}, "do_not_contact": True,
    }, subject=case_id, id=event_id)


async def handle(sessions, config, event: CloudEvent, now: datetime = T0) -> None:
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session, Outbox(session, None), "/punte/notification", now)
        await handlers.notify(uow, message("punte.referrals", event), config)
        await uow.outbox.flush()


async def queued(sessions, **where) -> list[tuple]:
    async with sessions() as session:
        rows = (await session.execute(sa.select(people_deliveries).order_by(people_deliveries.c.id))).all()
    return [(r.person, r.channel, r.purpose, r.round, r.status) for r in rows
            if all(getattr(r, k) == v for k, v in where.items())]


async def test_p0_alerts_on_every_channel_and_redelivery_tells_nobody_twice(sessions, config, smtp, tmp_path):
    event = requested("P0")
    await handle(sessions, config, event)
    await handle(sessions, config, event)  # the same event again, past the inbox
    assert sorted(await queued(sessions)) == sorted([
        ("cm.dgaspc-bc", "email", "alert", 0, "pending"), ("cm.dgaspc-bc", "sms", "alert", 0, "pending"),
        ("cm2.dgaspc-bc", "email", "notice", 0, "pending"), ("team:dgaspc-bc", "email", "notice", 0, "pending"),
    ])
    async with sessions() as session:
        assert (await session.execute(sa.select(alerts.c.level, alerts.c.round))).all() == [(0, 1)]
        # The institution's own system gets the same notice by signed webhook.
        hooks = (await session.execute(sa.select(webhook_deliveries.c.institution, webhook_deliveries.c.url))).all()
    assert hooks == [("dgaspc-bc", "http://127.0.0.1:9/punte")]

    async with sessions() as session:
        assert await send_due(session, config.channels, T0) == 4
    assert {status for *_, status in await queued(sessions)} == {"sent"}
    _, collector = smtp
    mails = {tuple(to): msg for _, to, msg in collector.received}
    assert set(mails) == {("caz@dgaspc-bc.example.invalid",), ("caz2@dgaspc-bc.example.invalid",),
                          ("echipa@dgaspc-bc.example.invalid",)}
    alert_mail = mails[("caz@dgaspc-bc.example.invalid",)]
    assert alert_mail["Subject"].startswith("[Punte P0] Trimitere nouă / New referral · case-1")
    body = alert_mail.get_content()
    assert "NU contactați familia" in body and "Termen: 2026-11-23 12:00" in body  # deadline in local time
    assert "http://127.0.0.1:8003/ui#n=" in body
    sms = [json.loads(line) for line in (tmp_path / "sms.jsonl").read_text().splitlines()]
    assert [s["to"] for s in sms] == ["+40700000001"]
    assert sms[0]["text"].startswith("Punte P0: Trimitere noua. Caz case-1.")
    assert not any(CNP.search(m.get_content()) for m in mails.values())


async def test_a_pass_records_what_it_sent_in_one_statement(sessions, config, smtp):
    """Batch first (issue #14): however many e-mails and SMS a pass sends, their outcomes
    are written in one update, each with its own provider id."""
    counts = []
    for n, cases in enumerate((1, 4)):
        for c in range(cases):
            await handle(sessions, config, requested("P0", referral_id=f"ref-{n}-{c}", case_id=f"case-{n}-{c}"))
        async with sessions() as session:
            with Statements(session.bind) as statements:
                sent = await send_due(session, config.channels, T0)
        assert sent == 4 * cases
        counts.append(len(statements.starting("UPDATE people_deliveries")))
    assert counts == [1, 1]
    async with sessions() as session:
        rows = (await session.execute(sa.select(people_deliveries.c.status, people_deliveries.c.provider_id,
                                                people_deliveries.c.attempts))).all()
    assert {(status, attempts) for status, _, attempts in rows} == {("sent", 1)}
    assert len({provider_id for _, provider_id, _ in rows}) == len(rows) == 20, "each its own provider id"


async def test_an_unacknowledged_p0_is_resent_then_escalated_until_acknowledged(sessions, config):
    await handle(sessions, config, requested("P0"))
    async with sessions() as session:
        await send_due(session, config.channels, T0)

    async def tick(minutes: float) -> list[str]:
        now = T0 + timedelta(minutes=minutes)
        async with sessions() as session:
            await handlers.fire_due_alerts(session, config, now)
        async with sessions() as session:
            await send_due(session, config.channels, now)
        async with sessions() as session:
            row = (await session.execute(sa.select(alerts))).one()
        return [row.level, row.round]

    assert await tick(9) == [0, 1]  # not yet: 10 minutes to acknowledge
    assert await tick(10) == [0, 2]  # re-sent to the person on call
    assert await tick(20) == [1, 1]  # escalated to the supervisor
    assert await tick(30) == [1, 2]
    assert await tick(40) == [2, 1]  # to the county coordinator
    alerted = await queued(sessions, purpose="alert")
    assert [(p, c, r) for p, c, _, r, _ in alerted] == [
        ("cm.dgaspc-bc", "email", 0), ("cm.dgaspc-bc", "sms", 0),
        ("cm.dgaspc-bc", "email", 2), ("cm.dgaspc-bc", "sms", 2),
        ("sup.dgaspc-bc", "email", 3), ("sup.dgaspc-bc", "sms", 3),
        ("sup.dgaspc-bc", "email", 4), ("sup.dgaspc-bc", "sms", 4),
        ("coord.dgaspc-bc", "email", 5), ("coord.dgaspc-bc", "sms", 5),
    ]
    assert {s for *_, s in alerted} == {"sent"}

    async with sessions() as session, session.begin():
        notification_id = (await session.execute(sa.select(alerts.c.notification_id))).scalar_one()
        entry = await alerting.acknowledge(session, notification_id, "dgaspc-bc", "sup.dgaspc-bc",
                                           T0 + timedelta(minutes=41))
        again = await alerting.acknowledge(session, notification_id, "dgaspc-bc", "cm.dgaspc-bc",
                                           T0 + timedelta(minutes=42))
        other = await alerting.acknowledge(session, notification_id, "das-bacau", "cm.das-bacau",
                                           T0 + timedelta(minutes=42))
    assert entry["acknowledged_by"] == again["acknowledged_by"] == "sup.dgaspc-bc"  # the first one is kept
    assert other is None  # another institution's entry is not found
    assert await tick(120) == [2, 1]  # acknowledged: nothing more is sent
    assert len(await queued(sessions, purpose="alert")) == 10


async def test_non_urgent_notices_wait_for_one_digest_and_respect_quiet_hours(sessions, config, smtp):
    night = datetime(2026, 11, 23, 21, 30, tzinfo=timezone.utc)  # 23:30 in Bucharest
    await handle(sessions, config, requested("P3", "ref-a", "case-a"), night)
    await handle(sessions, config, requested("P2", "ref-b", "case-b"), night)
    async with sessions() as session:
        assert await send_due(session, config.channels, night + timedelta(hours=2)) == 0
    morning = datetime(2026, 11, 24, 7, 0, tzinfo=ZONE)
    async with sessions() as session:
        assert await send_due(session, config.channels, morning) == 6  # 3 recipients x 2 notices
    _, collector = smtp
    assert sorted(to[0] for _, to, _ in collector.received) == [
        "caz2@dgaspc-bc.example.invalid", "caz@dgaspc-bc.example.invalid", "echipa@dgaspc-bc.example.invalid"]
    digest = collector.received[0][2]
    assert digest["Subject"] == "[Punte] Rezumat: 2 notificări noi / Digest: 2 new notifications"
    assert "case-a" in digest.get_content() and "case-b" in digest.get_content()


async def test_own_preferences_are_used_and_a_refused_address_fails_for_good(sessions, config, smtp):
    async with sessions() as session, session.begin():
        await session.execute(sa.insert(preferences).values(
            person="cm2.dgaspc-bc", channels=["email"], digest=False, updated_at=T0))
    await handle(sessions, config, requested("P3", "ref-c", "case-c"))
    assert ("cm2.dgaspc-bc", "email", "notice", 0, "pending") in await queued(sessions)

    controller, collector = smtp

    async def refuse(server, session, envelope, address, rcpt_options):
        return "550 no such mailbox" if address.startswith("caz2@") else "250 OK"
    collector.handle_RCPT = refuse  # type: ignore[attr-defined]
    async with sessions() as session:
        await send_due(session, config.channels, T0)
    assert await queued(sessions, person="cm2.dgaspc-bc") == [("cm2.dgaspc-bc", "email", "notice", 0, "failed")]
    async with sessions() as session:
        error = await session.scalar(sa.select(people_deliveries.c.last_error)
                                     .where(people_deliveries.c.person == "cm2.dgaspc-bc"))
    assert error.startswith("SMTP_RECIPIENT_REFUSED") and "550" in error


async def test_a_mail_server_that_is_down_is_retried_until_it_is_back(sessions, config, smtp):
    controller, collector = smtp
    await handle(sessions, config, requested("P1"))
    controller.stop()
    async with sessions() as session:
        await send_due(session, config.channels, T0)
    pending = await queued(sessions, channel="email")
    assert {s for *_, s in pending} == {"pending"}
    back = Controller(collector, hostname="127.0.0.1", port=controller.port)
    back.start()
    try:
        async with sessions() as session:
            await send_due(session, config.channels, T0 + timedelta(seconds=2))
    finally:
        back.stop()
    assert {s for *_, s in await queued(sessions, channel="email")} == {"sent"}
    assert len(collector.received) == 3


def test_the_embedded_mail_server_keeps_what_it_receives(tmp_path):
    import asyncio
    import subprocess
    import sys

    from punte.embedded import free_port, wait_for_port
    from services.notification.domain.templates import Rendered

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "punte.mailbox", "--port", str(port),
                                "--maildir", str(tmp_path / "mail")])
    try:
        wait_for_port(port, 20, process)
        sender = SmtpSender("127.0.0.1", port, "punte@example.invalid", starttls=False)
        asyncio.run(sender.send("caz@das-bacau.example.invalid", Rendered("Test Punte", "Bună ziua.\n")))
        found = mailbox_messages(tmp_path / "mail")
        assert [(m["To"], m["Subject"], m.get_content()) for m in found] == [
            ("caz@das-bacau.example.invalid", "Test Punte", "Bună ziua.\n")]
    finally:
        process.terminate()
        assert process.wait(10) == 0



async def test_each_institution_is_told_only_what_it_needs_to_know(notification_database, config, smtp):
    engine, sessions = notification_database
    opened = CloudEvent.new(EventType.CASE_OPENED.value, "/punte/intake", {
        "case_id": "case-n", "child_ref": "c" * 64, "uat_siruta": 20297,
        "categories": ["domestic_violence", "health_risk", "school_absenteeism"], "urgency": "P1",
        "lead": "dgaspc-bc", "informed": ["dgaspc-bc", "ipj-bc", "isj-bc", "dsp-bc"], "report_id": "r-1",
        "reporter": {"institution": "spas-colonesti", "role": "social-worker"}, "received_at": T0.isoformat(),
    }, subject="case-n")
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session, Outbox(session, None), "/punte/notification", T0)
        await handlers.notify(uow, message("punte.cases", opened), config)
        await uow.outbox.flush()
    async with sessions() as session:
        seen = dict((await session.execute(sa.select(inbox_entries.c.institution, inbox_entries.c.categories))).all())
    assert seen == {"dgaspc-bc": ["domestic_violence", "health_risk", "school_absenteeism"],
                    "ipj-bc": ["domestic_violence"],  # police never get health or school details
                    "isj-bc": ["school_absenteeism"],  # schools get school-related items
                    "dsp-bc": ["health_risk"]}
    delivered = {topic: data for topic, _, data in await emitted(engine)}
    assert delivered["punte.delivery.ipj-bc"]["categories"] == ["domestic_violence"]
    assert "medical" not in delivered["punte.delivery.ipj-bc"]["summary_ro"].lower()
    assert delivered["punte.delivery.isj-bc"]["categories"] == ["school_absenteeism"]
    # The DGASPC's inbox names the health risk; the e-mails its people get do not.
    assert "risc medical" in delivered["punte.delivery.dgaspc-bc"]["summary_ro"]
    async with sessions() as session:
        await send_due(session, config.channels, T0)
    _, collector = smtp
    bodies = [m.get_content() for _, _, m in collector.received]
    assert bodies and all("categorie protejată" in b and "medical" not in b.lower() for b in bodies)


async def test_the_referrer_hears_of_its_referral_with_every_category_it_reported(sessions, config):
    """The police may not know of the health risk, but the DGASPC that referred the case does:
    later notices take their facts from the referral, not from the police's inbox entry."""
    referral = requested("P1", "ref-p", "case-p", to="ipj-bc")
    referral.data.update(referrer="dgaspc-bc", categories=["sexual_abuse", "health_risk"])
    await handle(sessions, config, referral)
    accepted = CloudEvent.new(EventType.REFERRAL_TRANSITIONED.value, "/punte/referral", {
        "referral_id": "ref-p", "case_id": "case-p", "referrer": "dgaspc-bc", "to": "ipj-bc",
        "urgency": "P1", "command": "accept", "from_state": "received", "to_state": "accepted",
        "actor_institution": "ipj-bc", "at": T0.isoformat(),
    }, subject="case-p")
    await handle(sessions, config, accepted)
    async with sessions() as session:
        seen = {(r.institution, r.kind): r.categories for r in (await session.execute(
            sa.select(inbox_entries).where(inbox_entries.c.case_id == "case-p"))).all()}
    assert seen == {("ipj-bc", "referral-requested"): ["sexual_abuse"],
                    ("ipj-bc", "referral-updated"): ["sexual_abuse"],
                    ("dgaspc-bc", "referral-accepted"): ["sexual_abuse", "health_risk"]}


async def test_a_batch_is_told_as_one_by_one_with_one_insert_per_table(sessions, config, notification_database):
    """Batch-first (decision 0033): a consumed batch of referrals, P0 and P2, gives every
    recipient exactly the entries, messages, held pages, alerts and webhook deliveries that
    handling the events one by one gives, with one insert into each of their tables."""
    engine = notification_database[0]
    events = [requested("P0" if n % 2 == 0 else "P2", referral_id=f"ref-{n}", case_id=f"case-{n}",
                        event_id=f"ev-{n}") for n in range(12)]

    async def told() -> dict[str, list[tuple]]:
        async with engine.connect() as conn:
            return {
                "entries": sorted(tuple(r) for r in (await conn.execute(sa.select(
                    inbox_entries.c.notification_id, inbox_entries.c.institution, inbox_entries.c.kind,
                    inbox_entries.c.summary_ro))).all()),
                "people": sorted(tuple(r) for r in (await conn.execute(sa.select(
                    people_deliveries.c.notification_id, people_deliveries.c.person, people_deliveries.c.channel,
                    people_deliveries.c.purpose, people_deliveries.c.round, people_deliveries.c.due_at))).all()),
                "alerts": sorted(tuple(r) for r in (await conn.execute(sa.select(
                    alerts.c.notification_id, alerts.c.institution))).all()),
                "webhooks": sorted(r[0] for r in (await conn.execute(sa.select(
                    webhook_deliveries.c.notification_id))).all()),
            }

    for event in events:
        await handle(sessions, config, event)
    one_by_one = await told()
    async with engine.begin() as conn:
        for table in ("people_deliveries", "alerts", "webhook_deliveries", "inbox_entries", "facts", "punte_outbox"):
            await conn.execute(sa.text(f"TRUNCATE {table} CASCADE"))

    inserts: list[str] = []

    def note(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO"):
            inserts.append(statement.split()[2])

    sa.event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        async with sessions() as session, session.begin():
            uow = UnitOfWork(session, Outbox(session, None), "/punte/notification", T0)
            await handlers.notify_many(uow, [message("punte.referrals", e) for e in events], config)
            await uow.outbox.flush()
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", note)
    assert await told() == one_by_one
    assert one_by_one["alerts"] and any(p[3] == "digest" for p in one_by_one["people"]), \
        "P0 pages over the cap were held back, in both"
    assert one_by_one["webhooks"], "the institution's system is told too, in both"
    assert {t: inserts.count(t) for t in ("inbox_entries", "people_deliveries", "facts", "alerts",
                                           "webhook_deliveries")} == dict.fromkeys(
        ("inbox_entries", "people_deliveries", "facts", "alerts", "webhook_deliveries"), 1)
