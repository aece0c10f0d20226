"""Free text never rides a notification (issue #11, item 5), tried as an outside institution
would: the lead accepts a referral with a note that names a (synthetic) child, a CNP-shaped
number and "sarcină", and adds another note over HTTP. Nothing on any topic referral or
notification writes (delivery topics included), no webhook, e-mail, SMS or inbox entry,
and nothing referral keeps at rest carries the text; the lead reads it through referral's
API, the referrer (a summary view) sees only that a note exists. Reasons are codes of
contracts/reference/referral-reasons.yaml, over HTTP and Kafka alike."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import reference
from runtime.cloudevents import CloudEvent
from runtime.data_keys import DataKeys
from runtime.inbox import UnitOfWork
from runtime.outbox import Outbox
from runtime.settings import Settings
from runtime.signing import SigningKey
from services.notification import handlers as notification
from services.notification.adapters.deliveries import webhook_deliveries
from services.notification.adapters.tables import inbox_entries, people_deliveries
from services.notification.channels.people import send_due
from services.notification.domain.recipients import Recipients
from services.referral import bootstrap
from services.referral.adapters.tables import history
from services.referral.adapters.tables import notes as notes_table
from services.referral.entrypoints.http import router
from tests.integration.helpers import (
    REFERRAL_MIGRATIONS,
    T0,
    api_client,
    bearer,
    case_opened,
    delivered,
    emitted,
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

KEYS = {i: SigningKey.generate(f"{i}-1") for i in ("dgaspc-bc", "isj-bc")}
# A synthetic child: the name, a CNP-shaped number and a health word no message may carry.
SECRETS = ("Ionescu Maria Elena", "6150312041234", "sarcină")
ACCEPT_NOTE = f"Am vorbit cu {SECRETS[0]}, CNP {SECRETS[1]}: {SECRETS[2]} în luna a 4-a."
LATER_NOTE = f"Vizită la domiciliu: {SECRETS[0]} ({SECRETS[1]}) – {SECRETS[2]} confirmată."

RECIPIENTS = {
    "institutions": {
        inst: {"channels": ["email", "sms"], "team_email": f"echipa@{inst}.example.invalid",
               "webhook": f"http://127.0.0.1:9/{inst}", "digest_minutes": 0, "supervisors": [f"sup.{inst}"],
               "on_call": [{"person": f"cm.{inst}", "from": "2026-11-01T00:00:00+02:00",
                            "to": "2026-12-01T00:00:00+02:00"}]}
        for inst in ("dgaspc-bc", "isj-bc", "spas-colonesti")
    },
    "people": {
        person: {"institution": inst, "email": f"{person}@{inst}.example.invalid", "phone": phone,
                 "channels": ["email", "sms"], **({"role": "supervisor"} if person.startswith("sup.") else {})}
        for inst, n in (("dgaspc-bc", 1), ("isj-bc", 2), ("spas-colonesti", 3))
        for person, phone in ((f"cm.{inst}", f"+4070000{n}001"), (f"sup.{inst}", f"+4070000{n}002"))
    },
}


def command(sender: str, referral_id: str, name: str, **fields) -> CloudEvent:
    return KEYS[sender].sign(CloudEvent.new("ro.punte.referral.command.v1", f"/institutions/{sender}",
                                            {"referral_id": referral_id, "command": name, **fields}))


@pytest.fixture
async def network(infrastructure, notification_database, smtp, tmp_path):
    """Referral's real handlers and API, and notification's real handlers with e-mail,
    SMS and webhooks for every institution of the case."""
    consumers, engine = await referral_consumers(infrastructure.database_url, referral_config(keyring_of(KEYS)))
    await consumers["cases"].process([message("punte.cases", case_opened(), offset=next(positions))])
    client = api_client("referral", router, engine)
    controller, collector = smtp
    config = notification.Config(labels=reference.risk_categories(), recipients=Recipients.model_validate(RECIPIENTS),
                                 channels=people_channels(controller.port, tmp_path / "sms.jsonl"),
                                 network_key=SigningKey.generate("network-test"))
    yield consumers, engine, client, notification_database, config, collector, tmp_path
    await client.aclose()
    await engine.dispose()


async def tell_people(notification_db, config, events: list[dict]) -> None:
    """Notification handles every event referral published on punte.referrals, then sends
    the e-mails and SMS it queued."""
    _, sessions = notification_db
    for topic, headers, data in events:
        if topic != "punte.referrals":
            continue
        event = CloudEvent.new(headers["ce_type"], headers["ce_source"], data, subject=headers.get("ce_subject"),
                               id=headers["ce_id"])
        async with sessions() as session, session.begin():
            uow = UnitOfWork(session, Outbox(session, None), "/punte/notification", T0)
            await notification.notify(uow, message("punte.referrals", event, offset=next(positions)), config)
            await uow.outbox.flush()
    async with sessions() as session:
        await send_due(session, config.channels, T0)


def leaks(anything) -> list[str]:
    text = anything if isinstance(anything, str) else json.dumps(anything, ensure_ascii=False, default=str)
    return [secret for secret in SECRETS if secret in text]


async def test_a_note_with_a_childs_identity_stays_in_the_case_file(network):
    consumers, engine, client, notification_db, config, collector, tmp_path = network
    rid = of_type(await emitted(engine), "ro.punte.referral.requested.v1")[0]["referral_id"]
    lead = bearer("dgaspc-bc", "cm.dgaspc-bc")
    # The lead's system accepts over Kafka with the note, as an outside institution would.
    await consumers["commands"].process([message("punte.ingress.dgaspc-bc", command(
        "dgaspc-bc", rid, "accept", note=ACCEPT_NOTE), offset=next(positions))])
    noted = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "note", "note": LATER_NOTE},
                              headers=lead)
    assert noted.status_code == 200
    out = await emitted(engine)
    assert [d["status"] for d in delivered(out, "dgaspc-bc")] == ["accepted"]
    steps = of_type(out, "ro.punte.referral.transitioned.v1")
    assert [s["command"] for s in steps] == ["accept", "note"]
    assert all(s["note_id"] for s in steps), "each step says a note was added, and which"
    assert leaks(out) == [], "nothing referral publishes (punte.referrals, outcomes, access) carries the note"

    await tell_people(notification_db, config, out)
    notification_engine, sessions = notification_db
    told = await emitted(notification_engine)
    notices = [d for t, _, d in told if t.startswith("punte.delivery.")]
    assert {n["recipient"] for n in notices} >= {"isj-bc", "dgaspc-bc"}
    accepted = [n for n in notices if n["kind"] == "referral-accepted"]
    assert accepted and all(n["note"] is None and n["note_id"] == steps[0]["note_id"] for n in accepted)
    assert leaks(told) == [], "no delivery topic carries the note"
    async with sessions() as session:
        entries = [dict(r._mapping) for r in (await session.execute(sa.select(inbox_entries))).all()]
        hooks = [bytes(r.payload).decode() for r in (await session.execute(sa.select(webhook_deliveries))).all()]
        sent = (await session.execute(sa.select(sa.func.count()).select_from(people_deliveries))).scalar_one()
    assert entries and hooks and sent and collector.received
    assert leaks(entries) == [] and leaks(hooks) == []
    assert leaks([m.get_content() for _, _, m in collector.received]) == []
    assert leaks((tmp_path / "sms.jsonl").read_text(encoding="utf-8")) == []

    # At rest, referral keeps the note sealed (under the case's data key).
    async with engine.connect() as conn:
        kept = [dict(r._mapping) for r in (await conn.execute(sa.select(history))).all()]
        tables = (await conn.execute(sa.text(
            "select table_name from information_schema.tables where table_schema = 'public'"))).scalars().all()
        rows = [[str(v) for v in r] for t in tables
                for r in (await conn.execute(sa.text(f'select * from "{t}"'))).all()]
    assert kept and leaks(kept) == [] and leaks(rows) == []

    # The lead reads both notes through the API (a read recorded like any other)...
    seen = (await client.get(f"/v1/referrals/{rid}", headers=lead)).json()
    assert seen["view"] == "full"
    assert [n["text"] for n in seen["notes"]] == [ACCEPT_NOTE, LATER_NOTE]
    assert [h.get("note") for h in seen["history"] if h["command"] in ("accept", "note")] == [ACCEPT_NOTE, LATER_NOTE]
    # ...the school, which referred and takes no other part, sees that notes exist, not what they say.
    school = (await client.get(f"/v1/referrals/{rid}", headers=bearer("isj-bc", "cm.isj-bc"))).json()
    assert school["view"] == "summary"
    assert [n["note_id"] for n in school["notes"]] == [s["note_id"] for s in steps]
    assert all(n["text"] is None for n in school["notes"]) and leaks(school) == []
    reads = [d for t, _, d in await emitted(engine) if t == "punte.access"]
    assert {r["actor_institution"] for r in reads} == {"dgaspc-bc", "isj-bc"}


async def test_a_reason_outside_the_catalogue_is_refused_over_http_and_kafka(network):
    consumers, engine, client, *_ = network
    rid = of_type(await emitted(engine), "ro.punte.referral.requested.v1")[0]["referral_id"]
    lead = bearer("dgaspc-bc", "cm.dgaspc-bc")
    free_text = await client.post(f"/v1/referrals/{rid}/commands",
                                  json={"command": "reject", "reason": f"nu e la noi, {SECRETS[0]}"}, headers=lead)
    assert free_text.status_code == 422 and free_text.json()["detail"]["code"] == "UNKNOWN_REASON"
    assert leaks(free_text.json()) == []
    wrong_command = await client.post(f"/v1/referrals/{rid}/commands",
                                      json={"command": "reject", "reason": "no-longer-needed"}, headers=lead)
    assert wrong_command.status_code == 422 and wrong_command.json()["detail"]["code"] == "UNKNOWN_REASON"
    other = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "reject", "reason": "other"},
                              headers=lead)
    assert other.status_code == 422 and other.json()["detail"]["code"] == "NOTE_REQUIRED"
    await consumers["commands"].process([message("punte.ingress.dgaspc-bc", command(
        "dgaspc-bc", rid, "reject", reason="nu este de competența noastră"), offset=next(positions))])
    assert [(d["status"], d["reason"]["code"]) for d in delivered(await emitted(engine), "dgaspc-bc")] == [
        ("rejected", "UNKNOWN_REASON")]
    rejected = await client.post(f"/v1/referrals/{rid}/commands",
                                 json={"command": "reject", "reason": "outside-area"}, headers=lead)
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    assert rejected.json()["history"][-1]["reason"] == "outside-area"


async def test_notes_kept_in_clear_before_are_sealed_at_start_and_free_text_reasons_become_codes(network):
    consumers, engine, client, *_ = network
    rid = of_type(await emitted(engine), "ro.punte.referral.requested.v1")[0]["referral_id"]
    # Two steps as they were recorded before issue #11: the note and the reason in clear.
    async with engine.begin() as conn:
        await conn.execute(sa.insert(history), [
            {"referral_id": rid, "at": T0, "command": "note", "from_state": "requested", "to_state": "requested",
             "actor_institution": "dgaspc-bc", "reason": None, "note": ACCEPT_NOTE},
            {"referral_id": rid, "at": T0, "command": "reject", "from_state": "requested", "to_state": "rejected",
             "actor_institution": "dgaspc-bc", "reason": f"not-competent: {LATER_NOTE}", "note": None},
            {"referral_id": rid, "at": T0, "command": "hold", "from_state": "in-progress", "to_state": "on-hold",
             "actor_institution": "dgaspc-bc", "reason": "familia e plecată", "note": None},
        ])
    rt = client._transport.app.state.runtime  # type: ignore[attr-defined]
    await bootstrap.seed(rt)
    await bootstrap.seed(rt)  # again, as at every start: nothing more to do
    async with engine.connect() as conn:
        kept = (await conn.execute(sa.select(history).order_by(history.c.id))).all()
        sealed = (await conn.execute(sa.select(sa.func.count()).select_from(notes_table))).scalar_one()
    assert [(k.reason, k.note, k.note_id is not None) for k in kept] == [
        (None, None, True), ("not-competent", None, True), ("other", None, True)]
    assert sealed == 3 and leaks([dict(k._mapping) for k in kept]) == []
    seen = (await client.get(f"/v1/referrals/{rid}", headers=bearer("dgaspc-bc", "cm.dgaspc-bc"))).json()
    assert sorted(n["text"] for n in seen["notes"]) == sorted([ACCEPT_NOTE, LATER_NOTE, "familia e plecată"])


async def test_erasing_the_case_erases_its_notes(network):
    consumers, engine, client, *_ = network
    rid = of_type(await emitted(engine), "ro.punte.referral.requested.v1")[0]["referral_id"]
    lead = bearer("dgaspc-bc", "cm.dgaspc-bc")
    await client.post(f"/v1/referrals/{rid}/commands", json={"command": "note", "note": LATER_NOTE}, headers=lead)
    async with engine.begin() as conn:
        async with AsyncSession(bind=conn) as session:
            assert await DataKeys.erase(session, ["case:case-1"], "closed-case", T0) == 1
    seen = (await client.get(f"/v1/referrals/{rid}", headers=lead)).json()
    assert [(n["text"], n["erased"]) for n in seen["notes"]] == [(None, True)]
    assert leaks(seen) == []
    late = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "note", "note": "Încă una."},
                             headers=lead)
    assert late.status_code == 409 and late.json()["detail"]["code"] == "ILLEGAL_TRANSITION"


async def test_referral_does_not_start_without_data_keys(infrastructure):
    engine, _ = await migrated_database(infrastructure.database_url, "referral", REFERRAL_MIGRATIONS)
    try:
        app = service_app("referral", engine, router, settings=Settings(data_keys=""))
        with pytest.raises(RuntimeError, match="PUNTE_DATA_KEYS"):
            await bootstrap.seed(app.state.runtime)
    finally:
        await engine.dispose()
