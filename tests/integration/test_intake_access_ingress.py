"""Replays are recognised by who sent a message, not by what it says about itself (issue
#10): institution A writing `ce_source=/institutions/B, ce_id=X` on its own ingress topic
must not make B's later event X a "duplicate" for intake or referral, nor take B's answer
on the HTTP gateway.

The inbox key of an ingress message is the topic's owner and the event id, both known
before any header is trusted: the only institution that writes on A's topic is A (Kafka
ACLs), so a refused message there can only collide with A's own later event of the same id
(which A is then told was already answered, as for any replay), never with another's. It
is taken from the services' real wiring (bootstrap.consumers)."""
from __future__ import annotations

from datetime import datetime, timezone

from contracts.reference import SENDER_HEADER, gateway_topic, ingress_topic
from runtime.cloudevents import CloudEvent
from runtime.db import make_sessions
from runtime.inbox import InboxConsumer, Message
from runtime.outbox import OutboxRelay
from runtime.service import Runtime
from runtime.settings import Settings
from runtime.signing import SigningKey
from runtime.tokens import TokenVerifier
from services.intake import bootstrap as intake_bootstrap
from services.intake.entrypoints.http import router
from services.referral import bootstrap as referral_bootstrap
from services.referral import handlers as referral_handlers
from tests.integration.helpers import (
    INTAKE_MIGRATIONS,
    ISSUER,
    REFERRAL_MIGRATIONS,
    TEST_DATA_KEYS_SETTING,
    TEST_REPORT_KEYS_FILE,
    api_client,
    bearer,
    delivered,
    emitted,
    keyring_of,
    message,
    migrated_database,
    positions,
)

FORGER, VICTIM = "isj-bc", "spas-colonesti"
KEYS = {i: SigningKey.generate(f"{i}-1") for i in (FORGER, VICTIM)}
KEYRING = keyring_of(KEYS)
SETTINGS = Settings(pseudonym_key="5e" * 32, identity_keys=f"t-1:{'a7' * 32}",
                    intake_encryption_keys_file=TEST_REPORT_KEYS_FILE, data_keys=TEST_DATA_KEYS_SETTING)


def runtime_on(name: str, engine) -> Runtime:
    """The service's runtime on a test database, without a broker: enough for its bootstrap
    to build the consumers it runs in production."""
    return Runtime(name=name, settings=SETTINGS, engine=engine, sessions=make_sessions(engine),
                   producer=None, relay=OutboxRelay(engine, None),  # type: ignore[arg-type]
                   verifier=TokenVerifier(ISSUER.issuer, ISSUER.audience, ISSUER.jwks()),
                   network_key=None, keyring=KEYRING)


def ingress_consumer(consumers: list[InboxConsumer]) -> InboxConsumer:
    [found] = [c for c in consumers if c.reads(ingress_topic(VICTIM))]
    return found


def forged_and_genuine(type_: str, data: dict) -> tuple[CloudEvent, CloudEvent]:
    """B's event X, and A's message claiming to be it, signed with A's own key."""
    genuine = KEYS[VICTIM].sign(CloudEvent.new(type_, f"/institutions/{VICTIM}", data))
    forged = KEYS[FORGER].sign(CloudEvent(genuine.id, genuine.source, genuine.type, genuine.time,
                                          data, None, {}))
    return forged, genuine


async def test_a_forged_message_on_one_topic_does_not_swallow_another_institutions_report(infrastructure):
    engine, _ = await migrated_database(infrastructure.database_url, "intake", INTAKE_MIGRATIONS)
    try:
        consumer = ingress_consumer(intake_bootstrap.consumers(runtime_on("intake", engine)))
        forged, genuine = forged_and_genuine("ro.punte.report.submitted.v2", {
            "reporter": {"institution": VICTIM, "role": "social-worker"}, "channel": "social-worker",
            "child": {"cnp": "5150412041230", "uat_siruta": 21891, "county": "BC"},
            "risks": [{"category": "neglect"}], "description": "Date sintetice."})
        await consumer.process([message(ingress_topic(FORGER), forged, offset=next(positions))])
        await consumer.process([message(ingress_topic(VICTIM), genuine, offset=next(positions))])
        out = await emitted(engine)
        [refused] = delivered(out, FORGER)
        assert refused["reason"]["code"] == "SOURCE_MISMATCH"
        [answer] = delivered(out, VICTIM)
        assert (answer["subject_id"], answer["status"]) == (genuine.id, "accepted")
        # The gateway finds the victim's own answer under its event id, not the forger's refusal.
        client = api_client("intake", router, engine, KEYRING)
        async with client:
            asked = await client.get("/v1/events/outcome", params={"source": genuine.source, "id": genuine.id},
                                     headers=bearer(VICTIM, f"sys.{VICTIM}", "institution-system"))
        assert asked.status_code == 200 and asked.json() == answer
        # A real replay of the victim's event still has no second effect.
        await consumer.process([message(ingress_topic(VICTIM), genuine, offset=next(positions))])
        assert len(delivered(await emitted(engine), VICTIM)) == 1
    finally:
        await engine.dispose()


async def test_a_forged_message_does_not_swallow_another_institutions_referral_command(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "referral", REFERRAL_MIGRATIONS)
    try:
        async with sessions() as session, session.begin():
            await referral_handlers.seed_directory(session, datetime.now(timezone.utc))
        consumer = ingress_consumer(referral_bootstrap.consumers(runtime_on("referral", engine)))
        forged, genuine = forged_and_genuine("ro.punte.service.updated.v1",
                                             {"service_id": "cci-colonesti", "waiting": 2})
        await consumer.process([message(ingress_topic(FORGER), forged, offset=next(positions))])
        await consumer.process([message(ingress_topic(VICTIM), genuine, offset=next(positions))])
        out = await emitted(engine)
        assert [a["reason"]["code"] for a in delivered(out, FORGER)] == ["SOURCE_MISMATCH"]
        assert [(a["subject_id"], a["status"]) for a in delivered(out, VICTIM)] == [(genuine.id, "accepted")]
        assert consumer.dead_lettered == 0
    finally:
        await engine.dispose()



async def test_the_http_gateways_topic_answers_the_institution_it_names_once_whichever_way_it_came(infrastructure):
    """The gateway topic (decision 0032): its sender is the `punte_sender` header intake's
    gateway wrote, checked as the owner of an ingress topic is. A report naming another
    institution than its source is refused to that sender; one without the header answers
    nobody; the same report sent both over HTTP and on Kafka is handled once."""
    engine, _ = await migrated_database(infrastructure.database_url, "intake", INTAKE_MIGRATIONS)
    try:
        consumer = ingress_consumer(intake_bootstrap.consumers(runtime_on("intake", engine)))
        assert consumer.reads(gateway_topic())
        forged, genuine = forged_and_genuine("ro.punte.report.submitted.v2", {
            "reporter": {"institution": VICTIM, "role": "social-worker"}, "channel": "social-worker",
            "child": {"cnp": "5150412041230", "uat_siruta": 21891, "county": "BC"},
            "risks": [{"category": "neglect"}], "description": "Date sintetice."})

        def via_gateway(event: CloudEvent, sender: str | None) -> Message:
            extra = [(SENDER_HEADER, sender.encode())] if sender else []
            return message(gateway_topic(), value=event.body(), headers=[*event.headers(), *extra],
                           offset=next(positions))

        await consumer.process([via_gateway(forged, FORGER)])  # B's source, A's token
        await consumer.process([via_gateway(genuine, None)])  # no sender named
        out = await emitted(engine)
        [refused] = delivered(out, FORGER)
        assert refused["reason"]["code"] == "SOURCE_MISMATCH"
        assert delivered(out, VICTIM) == []
        await consumer.process([via_gateway(genuine, VICTIM)])
        await consumer.process([message(ingress_topic(VICTIM), genuine, offset=next(positions))])
        [answer] = delivered(await emitted(engine), VICTIM)
        assert (answer["subject_id"], answer["status"]) == (genuine.id, "accepted")
    finally:
        await engine.dispose()
