"""The person's rights (issue #11, item 6), on real PostgreSQL with each service's real
handlers and HTTP API:

- The data-protection officer of the case's lead exports everything the four services hold
  about the child (the identity opened in intake only), and each part is an access event
  with the purpose; the lead is told of it. Another institution's officer, the lead's case
  manager, or a request without the right's purpose: refused, and nothing recorded.
- Rectification adds an identity version (the earlier stays); a corrected CNP keeps the
  child's pseudonym, and a later report with it joins the same child.
- Restriction: reads refused with CASE_RESTRICTED, referral commands (HTTP and Kafka) and
  new referrals refused, notification sends nothing about the case; a new report about the
  child opens a case of its own; the export goes on; lifting the restriction restores all."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
import sqlalchemy as sa

from contracts.events import EventType
from contracts.reference import risk_categories
from punte.rights import collect_export
from runtime.cloudevents import CloudEvent
from runtime.db import make_sessions
from runtime.inbox import UnitOfWork
from runtime.outbox import Outbox
from runtime.settings import Settings
from runtime.signing import SigningKey
from services.audit import handlers as audit_handlers
from services.audit.entrypoints import privacy as audit_privacy
from services.intake.adapters.tables import cases as intake_cases
from services.intake.adapters.tables import identities
from services.intake.entrypoints import http as intake_http
from services.intake.entrypoints import privacy as intake_privacy
from services.notification import handlers as notification_handlers
from services.notification.adapters.tables import inbox_entries
from services.notification.domain.recipients import Recipients
from services.notification.entrypoints import privacy as notification_privacy
from services.referral import handlers as referral_handlers
from services.referral.entrypoints import http as referral_http
from services.referral.entrypoints import privacy as referral_privacy
from tests.integration.helpers import (
    NETWORK_KEY,
    ROOT,
    TEST_DATA_KEYS_SETTING,
    TEST_PSEUDONYM_KEY,
    audit_trail,
    bearer,
    emitted,
    intake_consumer,
    keyring_of,
    message,
    migrated_database,
    of_type,
    people_channels,
    positions,
    referral_config,
    referral_consumers,
    service_app,
)
from tests.integration.helpers import case_opened as helpers_case_opened

AUDIT_MIGRATIONS = ROOT / "services" / "audit" / "migrations"
KEYS = {i: SigningKey.generate(f"{i}-1") for i in ("isj-bc", "dsp-bc", "dgaspc-bc")}
KEYRING = keyring_of(KEYS)
CNP = "5150412041230"
CORRECTED_CNP = "5150412041257"  # synthetic, valid check digit
SETTINGS = Settings(identity_keys="test-1:" + bytes(range(32)).hex(), pseudonym_key=TEST_PSEUDONYM_KEY,
                    data_keys=TEST_DATA_KEYS_SETTING)
ACCESS = EventType.ACCESS.value
EXPORT = {"purpose": "subject-access"}


def report(sender: str = "isj-bc", cnp: str = CNP, given: str = "Ana") -> CloudEvent:
    return KEYS[sender].sign(CloudEvent.new("ro.punte.report.submitted.v2", f"/institutions/{sender}", {
        "reporter": {"institution": sender, "role": "school-counsellor"}, "channel": "school",
        "child": {"cnp": cnp, "given_name": given, "family_name": "Testescu",
                  "address": "str. Exemplului nr. 1", "uat_siruta": 21891, "county": "BC"},
        "risks": [{"category": "school_absenteeism"}], "description": "Date sintetice.",
    }))


def client_of(name: str, engine, *routers) -> httpx.AsyncClient:
    app = service_app(name, engine, *routers, settings=SETTINGS)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, raise_app_exceptions=False),
                             base_url=f"http://{name}.test")


class Intake:
    def __init__(self, consumer, engine) -> None:
        self.consumer, self.engine = consumer, engine
        self.client = client_of("intake", engine, intake_http.router, intake_privacy.router)

    async def submit(self, event: CloudEvent) -> None:
        await self.consumer.process([message(f"punte.ingress.{event.source.rsplit('/', 1)[1]}", event,
                                             offset=next(positions))])

    async def cases(self) -> list[sa.Row]:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(intake_cases).order_by(intake_cases.c.opened_at))).all()

    async def published(self, type_: str) -> list[tuple[dict, dict]]:
        """(headers, data) of intake's outbox events of one type, signed as its relay would."""
        return [(h, d) for t, h, d in await emitted(self.engine) if h.get("ce_type") == type_]


@pytest.fixture
async def intake(infrastructure):
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    world = Intake(consumer, engine)
    await world.submit(report())
    yield world
    await world.client.aclose()
    await engine.dispose()


def as_network(type_: str, data: dict, case_id: str) -> CloudEvent:
    """An event of intake's as it reaches the other services: signed by the network."""
    return NETWORK_KEY.sign(CloudEvent.new(type_, "/punte/intake", data, subject=case_id))


def officer(institution: str) -> dict[str, str]:
    return bearer(institution, f"dpo.{institution}", "privacy-officer")


def accesses(out, case_id: str) -> list[dict]:
    return [d for d in of_type(out, ACCESS) if d["case_id"] == case_id]


# --- referral, notification, audit holding the case ---------------------------------------

async def notify(sessions, config, topic: str, event: CloudEvent) -> None:
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session, Outbox(session, None), "/punte/notification")
        await notification_handlers.notify(uow, message(topic, event), config)
        await uow.outbox.flush()


@pytest.fixture
def notification_config(smtp, tmp_path) -> notification_handlers.Config:
    controller, _ = smtp
    recipients = Recipients.model_validate({"institutions": {}, "people": {}})
    return notification_handlers.Config(labels=risk_categories(), recipients=recipients,
                                        channels=people_channels(controller.port, tmp_path / "sms.jsonl"),
                                        network_key=None)


async def test_the_leads_officer_exports_everything_and_every_part_is_recorded_and_told(
        intake, infrastructure, notification_database, notification_config):
    [case] = await intake.cases()
    [(_, opened)] = await intake.published(EventType.CASE_OPENED.value)
    case_opened = as_network(EventType.CASE_OPENED.value, opened, case.case_id)
    referral_consumer, referral_engine = await referral_consumers(infrastructure.database_url, referral_config())
    audit_engine, audit_sessions = await migrated_database(infrastructure.database_url, "audit", AUDIT_MIGRATIONS)
    notification_engine, notification_sessions = notification_database
    try:
        await referral_consumer["cases"].process([message("punte.cases", case_opened, offset=next(positions))])
        await notify(notification_sessions, notification_config, "punte.cases", case_opened)
        async with audit_sessions() as session, session.begin():
            uow = UnitOfWork(session, Outbox(session, None), "/punte/audit")
            record = message("punte.cases", case_opened, offset=next(positions))
            await audit_handlers.append(uow, record, audit_trail())
            await audit_privacy.follow_case(uow, record)
        clients = {
            "intake": intake.client,
            "referral": client_of("referral", referral_engine, referral_http.router, referral_privacy.router),
            "notification": client_of("notification", notification_engine, notification_privacy.router),
            "audit": client_of("audit", audit_engine, audit_privacy.router),
        }
        for client in clients.values():
            client.headers.update(officer(case.lead))
        document = await collect_export(clients, case.case_id, "subject-access", case.lead)
        # A participant's officer is refused as not the lead, an outsider's told of no case.
        refused = {(name, who): (answer.status_code, answer.json()["detail"]["code"])
                   for name in ("referral", "notification", "audit")
                   for who, institution in (("participant", case.informed[0]), ("outsider", "dgaspc-nt"))
                   for answer in [await clients[name].get(f"/privacy/cases/{case.case_id}/export", params=EXPORT,
                                                          headers=officer(institution))]}
        told = accesses(await emitted(intake.engine), case.case_id)
        parts = {name: accesses(await emitted(engine), case.case_id) for name, engine in
                 (("referral", referral_engine), ("notification", notification_engine), ("audit", audit_engine))}
        # The lead hears of the export although its own officer made it (a right exercised).
        [access_event] = told
        await notify(notification_sessions, notification_config, "punte.access",
                     as_network(ACCESS, access_event, case.case_id))
        async with notification_engine.connect() as conn:
            notices = (await conn.execute(sa.select(inbox_entries.c.institution, inbox_entries.c.kind)
                                          .where(inbox_entries.c.case_id == case.case_id))).all()
        for name in ("referral", "notification", "audit"):
            await clients[name].aclose()
    finally:
        await referral_engine.dispose()
        await audit_engine.dispose()

    identity = document["intake"]["identity_versions"][0]["identity"]
    assert (identity["cnp"], identity["given_name"]) == (CNP, "Ana")
    assert [c["case_id"] for c in document["intake"]["cases"]] == [case.case_id]
    assert document["intake"]["cases"][0]["reports"][0]["reporter"] == "isj-bc"
    ours = document["cases"][case.case_id]
    assert [r["to"] for r in ours["referral"]["referrals"]] == [case.lead]
    assert {n["kind"] for n in ours["notification"]["notices"]} == {"case-informed"}
    assert [e["event_type"] for e in ours["audit"]["entries"]] == [EventType.CASE_OPENED.value]
    assert "entry_base64" not in ours["audit"]["entries"][0], "no break-glass: never the recorded bytes"
    # Only intake's part names the child.
    for service in ("referral", "notification", "audit"):
        assert CNP not in str(ours[service]) and "Testescu" not in str(ours[service])
    for access in [*told, *(a for found in parts.values() for a in found)]:
        assert (access["actor"], access["actor_institution"], access["purpose"]) == (
            f"dpo.{case.lead}", case.lead, "subject-access")
    assert {name: len(found) for name, found in parts.items()} == {"referral": 1, "notification": 1, "audit": 1}
    assert (case.lead, "case-accessed") in notices
    assert refused == {(name, who): code for name in ("referral", "notification", "audit")
                       for who, code in (("participant", (403, "NOT_CASE_LEAD")), ("outsider", (404, "UNKNOWN_CASE")))}


async def test_another_institutions_officer_a_case_manager_or_no_purpose_is_refused(intake):
    [case] = await intake.cases()
    path = f"/privacy/cases/{case.case_id}/export"
    informed = case.informed[0]
    outsider = next(i for i in ("ipj-bc", "dsp-bc", "spas-colonesti") if i not in (case.lead, *case.informed))
    answers = {
        "officer of an institution taking no part": await intake.client.get(path, params=EXPORT,
                                                                           headers=officer(outsider)),
        "other county's officer": await intake.client.get(path, params=EXPORT, headers=officer("dgaspc-nt")),
        "informed institution's officer": await intake.client.get(path, params=EXPORT, headers=officer(informed)),
        "lead's case manager": await intake.client.get(path, params=EXPORT, headers=bearer(case.lead, "cm.x")),
        "no purpose": await intake.client.get(path, headers=officer(case.lead)),
        "case work": await intake.client.get(path, params={"purpose": "case-work"}, headers=officer(case.lead)),
        "another right's purpose": await intake.client.get(path, params={"purpose": "restriction"},
                                                          headers=officer(case.lead)),
    }
    codes = {who: (a.status_code, a.json()["detail"]["code"]) for who, a in answers.items()}
    assert codes == {
        "officer of an institution taking no part": (404, "UNKNOWN_CASE"),
        "other county's officer": (404, "UNKNOWN_CASE"),
        "informed institution's officer": (403, "NOT_CASE_LEAD"),
        "lead's case manager": (403, "FORBIDDEN"),
        "no purpose": (422, "PURPOSE_REQUIRED"),
        "case work": (422, "PURPOSE_REQUIRED"),
        "another right's purpose": (422, "PURPOSE_REQUIRED"),
    }
    assert accesses(await emitted(intake.engine), case.case_id) == [], "a refused export reads nothing"


async def test_rectification_adds_a_version_and_a_corrected_cnp_keeps_the_child(intake):
    [case] = await intake.cases()
    path = f"/privacy/cases/{case.case_id}/identity"
    by_case_manager = await intake.client.post(path, params={"purpose": "rectification"},
                                               json={"fields": {"given_name": "Ana-Maria"}},
                                               headers=bearer(case.lead, "cm.x"))
    rectified = await intake.client.post(path, params={"purpose": "rectification; cererea mamei"},
                                         json={"fields": {"given_name": "Ana-Maria", "cnp": CORRECTED_CNP}},
                                         headers=officer(case.lead))
    export = await intake.client.get(f"/privacy/cases/{case.case_id}/export", params=EXPORT,
                                     headers=officer(case.lead))
    # A later report gives the corrected CNP: the same child, the same (open) case.
    await intake.submit(report("dsp-bc", cnp=CORRECTED_CNP, given="Ana-Maria"))
    async with intake.engine.connect() as conn:
        refs = set((await conn.execute(sa.select(identities.c.child_ref))).scalars())

    assert by_case_manager.status_code == 403 and by_case_manager.json()["detail"]["code"] == "FORBIDDEN"
    assert rectified.status_code == 201, rectified.text
    first, second = export.json()["identity_versions"]
    assert (first["source"], first["identity"]["given_name"], first["identity"]["cnp"]) == ("report", "Ana", CNP)
    assert (second["source"], second["identity"]["given_name"], second["identity"]["cnp"]) == (
        "rectification", "Ana-Maria", CORRECTED_CNP)
    assert second["identity"]["address"] == "str. Exemplului nr. 1", "fields not corrected are carried over"
    assert second["rectification"]["by"] == f"dpo.{case.lead}"
    assert (second["rectification"]["purpose"], second["rectification"]["purpose_text"]) == (
        "rectification", "cererea mamei")
    assert export.json()["child_ref"] == case.child_ref, "the pseudonym does not change"
    assert refs == {case.child_ref}
    assert [c.case_id for c in await intake.cases()] == [case.case_id]


async def test_restriction_stops_processing_but_storage_and_the_export_and_lifting_restores(
        intake, infrastructure, notification_database, notification_config):
    [case] = await intake.cases()
    restriction = f"/privacy/cases/{case.case_id}/restriction"
    lead_cm = bearer(case.lead, f"cm.{case.lead}", "case-manager")
    [(_, opened)] = await intake.published(EventType.CASE_OPENED.value)
    case_opened = as_network(EventType.CASE_OPENED.value, opened, case.case_id)
    lead_key = KEYS.get(case.lead) or SigningKey.generate(f"{case.lead}-1")
    referral_consumer, referral_engine = await referral_consumers(
        infrastructure.database_url, referral_config(keyring_of({**KEYS, case.lead: lead_key})))
    notification_engine, notification_sessions = notification_database
    referrals = client_of("referral", referral_engine, referral_http.router, referral_privacy.router)
    try:
        await referral_consumer["cases"].process([message("punte.cases", case_opened, offset=next(positions))])
        await notify(notification_sessions, notification_config, "punte.cases", case_opened)
        [before] = (await referrals.get("/v1/referrals/inbox", headers=lead_cm)).json()

        restricted = await intake.client.put(restriction, params={"purpose": "restriction"},
                                             json={"restricted": True}, headers=officer(case.lead))
        [(_, told)] = await intake.published(EventType.CASE_RESTRICTED.value)
        event = as_network(EventType.CASE_RESTRICTED.value, told, case.case_id)
        await referral_consumer["cases"].process([message("punte.cases", event, offset=next(positions))])
        await notify(notification_sessions, notification_config, "punte.cases", event)

        read = await intake.client.get(f"/v1/cases/{case.case_id}", headers=lead_cm)
        exported = await intake.client.get(f"/privacy/cases/{case.case_id}/export", params=EXPORT,
                                           headers=officer(case.lead))
        command = await referrals.post(f"/v1/referrals/{before['referral_id']}/commands",
                                       json={"command": "claim"}, headers=lead_cm)
        new_referral = await referrals.post("/v1/referrals", json={
            "case_id": case.case_id, "to": "dsp-bc", "kind": "information-request"}, headers=lead_cm)
        inbox = (await referrals.get("/v1/referrals/inbox", headers=lead_cm)).json()
        over_kafka = lead_key.sign(CloudEvent.new(
            "ro.punte.referral.command.v1", f"/institutions/{case.lead}",
            {"referral_id": before["referral_id"], "command": "acknowledge"}))
        await referral_consumer["commands"].process([message(f"punte.ingress.{case.lead}", over_kafka,
                                                             offset=next(positions))])
        # A referral step about the case reaches notification: nobody is told.
        sent_before = len(await emitted(notification_engine))
        step = NETWORK_KEY.sign(CloudEvent.new(EventType.REFERRAL_TRANSITIONED.value, "/punte/referral", {
            "referral_id": before["referral_id"], "case_id": case.case_id, "referrer": "isj-bc",
            "to": case.lead, "urgency": case.urgency, "command": "acknowledge", "from_state": "requested",
            "to_state": "acknowledged", "actor_institution": case.lead, "at": opened["received_at"],
        }, subject=case.case_id))
        await notify(notification_sessions, notification_config, "punte.referrals", step)
        sent_while_restricted = len(await emitted(notification_engine)) - sent_before
        # A new report about the child: a case of its own, processed as any other.
        await intake.submit(report("dsp-bc"))
        after_new_report = await intake.cases()

        lifted = await intake.client.put(restriction, params={"purpose": "restriction"},
                                         json={"restricted": False}, headers=officer(case.lead))
        [_, (_, lift)] = await intake.published(EventType.CASE_RESTRICTED.value)
        event = as_network(EventType.CASE_RESTRICTED.value, lift, case.case_id)
        await referral_consumer["cases"].process([message("punte.cases", event, offset=next(positions))])
        await notify(notification_sessions, notification_config, "punte.cases", event)
        read_again = await intake.client.get(f"/v1/cases/{case.case_id}", headers=lead_cm)
        command_again = await referrals.post(f"/v1/referrals/{before['referral_id']}/commands",
                                             json={"command": "claim"}, headers=lead_cm)
        step_again = NETWORK_KEY.sign(CloudEvent.new(step.type, step.source, step.data, subject=case.case_id))
        await notify(notification_sessions, notification_config, "punte.referrals", step_again)
        sent_after_lifting = len(await emitted(notification_engine)) - sent_before - sent_while_restricted
        referral_outcomes = [d for t, h, d in await emitted(referral_engine) if h.get("ce_type") == "ro.punte.outcome.v1"]
    finally:
        await referrals.aclose()
        await referral_engine.dispose()

    assert (restricted.status_code, restricted.json()["restricted"]) == (200, True)
    assert (told["case_id"], told["restricted"], told["by"]) == (case.case_id, True, case.lead)
    assert (read.status_code, read.json()["detail"]["code"]) == (409, "CASE_RESTRICTED")
    assert exported.status_code == 200 and exported.json()["cases"][0]["restricted"] is True
    assert (command.status_code, command.json()["detail"]["code"]) == (409, "CASE_RESTRICTED")
    assert (new_referral.status_code, new_referral.json()["detail"]["code"]) == (409, "CASE_RESTRICTED")
    assert inbox == [], "a restricted case's referrals are not listed"
    assert [(o["status"], o["reason"]["code"]) for o in referral_outcomes] == [("rejected", "CASE_RESTRICTED")]
    assert sent_while_restricted == 0
    assert len(after_new_report) == 2 and after_new_report[0].case_id == case.case_id
    assert after_new_report[1].child_ref == case.child_ref

    assert (lifted.status_code, lifted.json()["restricted"]) == (200, False)
    assert read_again.status_code == 200
    assert command_again.status_code == 200, command_again.text
    assert sent_after_lifting > 0, "once lifted, the case's steps are told again"


async def test_a_restricted_cases_deadlines_wait_and_fire_once_lifted(infrastructure):
    config = referral_config()
    consumer, engine = await referral_consumers(infrastructure.database_url, config)
    sessions = make_sessions(engine)
    later = datetime.now(timezone.utc) + timedelta(days=30)  # every deadline of the referral is past

    def restriction(restricted: bool, minutes: int) -> CloudEvent:
        return as_network(EventType.CASE_RESTRICTED.value, {
            "case_id": "case-r", "restricted": restricted, "by": "dgaspc-bc",
            "at": (datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()}, "case-r")

    async def fire() -> int:
        async with sessions() as session, session.begin():
            uow = UnitOfWork(session, Outbox(session), "/punte/referral", now=later)
            fired = await referral_handlers.fire_due_timers(uow, config)
            await uow.outbox.flush()
            return fired

    try:
        await consumer["cases"].process([message("punte.cases", helpers_case_opened("case-r"), offset=next(positions))])
        await consumer["cases"].process([message("punte.cases", restriction(True, 0), offset=next(positions))])
        while_restricted = await fire()
        await consumer["cases"].process([message("punte.cases", restriction(False, 1), offset=next(positions))])
        once_lifted = await fire()
    finally:
        await engine.dispose()
    assert while_restricted == 0
    assert once_lifted > 0
