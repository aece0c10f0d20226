"""The network's own topics are trusted only with the network's signature: referral and
notification, wired as their bootstraps wire them, apply what the network signed and
dead-letter what it did not (unsigned, another key, altered); the audit trail still records
every message as it arrived. Against real PostgreSQL."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from contracts.events import EventType
from contracts.reference import institutions
from punte import recipients
from runtime.cloudevents import CloudEvent
from runtime.db import make_sessions
from runtime.inbox import DEAD_LETTER_TOPIC
from runtime.outbox import OutboxRelay
from runtime.service import Runtime
from runtime.settings import Settings
from runtime.signing import Keyring, SigningKey, network_keyring
from runtime.tokens import TokenVerifier
from services.audit import bootstrap as audit_bootstrap
from services.notification import bootstrap as notification_bootstrap
from services.referral import bootstrap as referral_bootstrap
from tests.integration.helpers import (
    AUDIT_DATA_KEYS,
    NETWORK_KEY,
    REFERRAL_MIGRATIONS,
    TEST_DATA_KEYS_SETTING,
    case_opened,
    delivered,
    emitted,
    keyring_of,
    message,
    migrated_database,
    on_topic,
    positions,
)

ROOT = Path(__file__).resolve().parents[2]
# The same key id as the network's, another key: what a forger would try.
IMPOSTOR = SigningKey.generate(NETWORK_KEY.key_id)


def runtime(name: str, engine, settings: Settings | None = None) -> Runtime:
    """A service's Runtime as its lifespan builds it, without a broker."""
    return Runtime(
        name=name, settings=settings or Settings(data_keys=TEST_DATA_KEYS_SETTING), engine=engine, sessions=make_sessions(engine),
        producer=None, relay=OutboxRelay(engine, None),  # type: ignore[arg-type]
        verifier=TokenVerifier("http://issuer.test", "punte", {"keys": []}),
        network_key=NETWORK_KEY, keyring=Keyring([]), network_keys=network_keyring(NETWORK_KEY))


def unsigned(case_id: str) -> CloudEvent:
    """Intake's case.opened without the network's signature."""
    return replace(case_opened(case_id, lead="dgaspc-bc"), extensions={})


def dead_letter_codes(out) -> dict[str, str]:
    """Dead letters by the event id of the message they hold."""
    return {d["headers"]["ce_id"]: d["reason"]["code"] for d in on_topic(out, DEAD_LETTER_TOPIC)}


@pytest.fixture
async def referral(infrastructure):
    engine, _ = await migrated_database(infrastructure.database_url, "referral", REFERRAL_MIGRATIONS)
    rt = runtime("referral", engine)
    (cases,) = [c for c in referral_bootstrap.consumers(rt) if c._topics == ["punte.cases"]]
    yield cases, engine
    await engine.dispose()


def referred_cases(out) -> set[str]:
    return {d["case_id"] for d in on_topic(out, "punte.referrals")}


async def test_referral_acts_only_on_cases_the_network_signed(referral):
    cases, engine = referral
    good = NETWORK_KEY.sign(unsigned("case-good"))
    missing = unsigned("case-unsigned")
    forged = IMPOSTOR.sign(unsigned("case-forged"))
    altered = NETWORK_KEY.sign(unsigned("case-altered"))
    altered_message = message("punte.cases", altered, offset=next(positions))
    altered_message = replace(altered_message, value=altered_message.value.replace(b'"P1"', b'"P0"'))

    await cases.process([message("punte.cases", good, offset=next(positions)),
                         message("punte.cases", missing, offset=next(positions)),
                         message("punte.cases", forged, offset=next(positions)), altered_message])

    out = await emitted(engine)
    assert referred_cases(out) == {"case-good"}
    assert dead_letter_codes(out) == {missing.id: "MISSING_SIGNATURE", forged.id: "BAD_SIGNATURE",
                                      altered.id: "BAD_SIGNATURE"}
    assert cases.dead_lettered == 3


async def test_a_v1_network_signature_is_still_accepted(referral):
    cases, engine = referral
    await cases.process([message("punte.cases", NETWORK_KEY.sign(unsigned("case-v1"), version=1),
                                 offset=next(positions))])
    assert referred_cases(await emitted(engine)) == {"case-v1"}


async def test_a_forged_copy_arriving_first_does_not_make_the_real_event_a_duplicate(referral):
    cases, engine = referral
    real = NETWORK_KEY.sign(unsigned("case-real"))
    forged = CloudEvent(real.id, real.source, real.type, real.time, {**real.data, "lead": "isj-bc"},
                        real.subject)  # same ce_source and ce_id, unsigned
    await cases.process([message("punte.cases", forged, offset=next(positions))])
    await cases.process([message("punte.cases", real, offset=next(positions))])
    out = await emitted(engine)
    assert referred_cases(out) == {"case-real"}
    assert [d["to"] for d in on_topic(out, "punte.referrals")] == ["dgaspc-bc"]
    assert cases.duplicates == 0


async def test_notification_tells_no_one_of_an_event_the_network_did_not_sign(infrastructure, tmp_path):
    engine, _ = await migrated_database(infrastructure.database_url, "notification",
                                        ROOT / "services" / "notification" / "migrations")
    recipients.write(tmp_path / "recipients.yaml", recipients.demo_recipients(institutions().values()))
    settings = Settings(recipients_file=tmp_path / "recipients.yaml", sms_file=tmp_path / "sms.jsonl",
                        smtp_host="")
    rt = runtime("notification", engine, settings)
    try:
        await notification_bootstrap.configure(rt)
        (consumer,) = notification_bootstrap.consumers(rt)
        signed = NETWORK_KEY.sign(unsigned("case-told"))
        forged = IMPOSTOR.sign(unsigned("case-not-told"))
        await consumer.process([message("punte.cases", signed, offset=next(positions)),
                                message("punte.cases", forged, offset=next(positions))])
        out = await emitted(engine)
        told = {d["case_id"] for t, h, d in out if t.startswith("punte.delivery.")}
        assert told == {"case-told"}
        assert dead_letter_codes(out) == {forged.id: "BAD_SIGNATURE"}
    finally:
        await engine.dispose()


async def test_the_audit_trail_records_a_forged_message_as_it_arrived(infrastructure):
    """The trail keeps every message, forged ones too (they are evidence): audit does not
    verify before recording. The forgery is flagged by the dead letter a verifying consumer
    writes for it (MISSING_SIGNATURE, BAD_SIGNATURE), which the trail records as well."""
    import sqlalchemy as sa

    from services.audit.adapters.tables import audit_entries

    engine, _ = await migrated_database(infrastructure.database_url, "audit",
                                        ROOT / "services" / "audit" / "migrations")
    try:
        trail, _cases = audit_bootstrap.consumers(runtime("audit", engine, Settings(data_keys=AUDIT_DATA_KEYS)))
        forged = unsigned("case-forged")
        await trail.process([message("punte.cases", forged, offset=next(positions))])
        async with engine.connect() as conn:
            recorded = (await conn.execute(sa.select(audit_entries.c.event_id))).scalars().all()
        assert recorded == [forged.id] and trail.dead_lettered == 0
    finally:
        await engine.dispose()


async def test_institutions_messages_on_their_ingress_topics_are_theirs_to_sign(infrastructure):
    """Ingress topics carry institutions' signatures, checked by runtime.ingress: the
    network's check leaves them to it."""
    engine, _ = await migrated_database(infrastructure.database_url, "referral", REFERRAL_MIGRATIONS)
    school = SigningKey.generate("isj-bc-1")
    rt = replace(runtime("referral", engine), keyring=keyring_of({"isj-bc": school}))
    try:
        (commands,) = [c for c in referral_bootstrap.consumers(rt) if c._pattern]
        command = school.sign(CloudEvent.new(EventType.REFERRAL_COMMAND.value, "/institutions/isj-bc", {
            "referral_id": "ref-none", "command": "cancel", "reason": "wrong-institution"}))
        await commands.process([message("punte.ingress.isj-bc", command, offset=next(positions))])
        (answer,) = delivered(await emitted(engine), "isj-bc")
        assert answer["reason"]["code"] == "UNKNOWN_REFERRAL"
        assert commands.dead_lettered == 0
    finally:
        await engine.dispose()
