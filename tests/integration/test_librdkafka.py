"""An institution's system built on librdkafka (confluent-kafka), the client most Kafka
libraries outside Java wrap (issue #16): against the test session's broker (the embedded
Tansu by default, Apache Kafka with --broker kafka, there as the institution's own
principal), it sends a signed report to its ingress topic and reads the network's answer
from its delivery topic in a consumer group of its own, `<institution>.conformance`.

What it needs is in docs/contracts.md ("Brokers and clients"): librdkafka 2.16 works with
the client's defaults except session.timeout.ms, lowered here so the embedded broker
assigns the partition in about 3 s rather than 23 s. librdkafka 2.0.2 (Debian 12's kcat)
cannot read the embedded broker's ApiVersions answer at all."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import confluent_kafka
import pytest
from confluent_kafka import Consumer, Producer

from contracts.reference import delivery_topic, ingress_topic
from runtime.cloudevents import CloudEvent
from runtime.inbox import Message
from runtime.kafka import ensure_topics, make_producer
from runtime.outbox import OutboxRelay
from runtime.signing import Keyring, SigningKey, network_jwks
from tests.integration.helpers import NETWORK_KEY, intake_consumer, keyring_of, read_topic
from tests.unit.test_network_keys import verify_as_a_receiver

SCHOOL = "isj-bc"
KEY = SigningKey.generate(f"{SCHOOL}-conformance-1")


def client_config(infrastructure) -> dict[str, str | int]:
    """What an institution's librdkafka client sets: the bootstrap address, and on Apache
    Kafka its own principal (SCRAM-SHA-512), nothing else the broker needs."""
    config: dict[str, str | int] = {"bootstrap.servers": infrastructure.kafka_bootstrap}
    if infrastructure.kafka is not None:
        config |= {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                   "sasl.username": SCHOOL, "sasl.password": infrastructure.kafka.passwords[SCHOOL]}
    return config


def report() -> CloudEvent:
    return KEY.sign(CloudEvent.new("ro.punte.report.submitted.v2", f"/institutions/{SCHOOL}", {
        "reporter": {"institution": SCHOOL, "role": "school-counsellor"}, "channel": "school",
        "child": {"cnp": "5150412041230", "uat_siruta": 21891, "county": "BC"},
        "risks": [{"category": "school_absenteeism"}], "description": "Absențe repetate (date sintetice).",
    }))


def produce(config: dict, topic: str, event: CloudEvent) -> None:
    """Send as an institution's system would: the event's headers and body as they are."""
    failures: list[object] = []
    producer = Producer({**config, "acks": "all"})
    producer.produce(topic, event.body(), key=event.id.encode(), headers=event.headers(),
                     on_delivery=lambda error, _: failures.append(error) if error else None)
    assert producer.flush(30) == 0 and failures == [], failures


def outcome_of(config: dict, topic: str, event_id: str, seconds: float = 60):
    """The outcome answering ``event_id``, read in the institution's own group, committed."""
    consumer = Consumer({**config, "group.id": f"{SCHOOL}.conformance", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            record = consumer.poll(0.5)
            if record is None:
                continue
            assert record.error() is None, record.error()
            if json.loads(record.value()).get("subject_id") == event_id:
                consumer.commit(message=record, asynchronous=False)
                return record
        raise AssertionError(f"no outcome of {event_id} on {topic} within {seconds} s")
    finally:
        consumer.close()


@pytest.mark.broker
async def test_a_librdkafka_client_sends_a_signed_report_and_reads_its_outcome(infrastructure):
    assert tuple(int(n) for n in confluent_kafka.libversion()[0].split(".")[:2]) >= (2, 16)
    bootstrap, config = infrastructure.kafka_bootstrap, client_config(infrastructure)
    ingress, delivery = ingress_topic(SCHOOL), delivery_topic(SCHOOL)
    await ensure_topics(bootstrap, [(ingress, 1), (delivery, 1), ("punte.cases", 3)])
    sent = report()
    await asyncio.to_thread(produce, config, ingress, sent)

    # Intake reads it as its consumer would (aiokafka), decides, and its relay publishes.
    [record] = [r for r in await read_topic(bootstrap, ingress, 10_000, timeout=5)
                if dict(r.headers).get("ce_id") == sent.id.encode()]
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, keyring_of({SCHOOL: KEY}),
                                                signer=NETWORK_KEY)
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        await consumer.process([Message.of(record)])
        assert await OutboxRelay(engine, producer).publish_batch() >= 2  # the outcome and the case
    finally:
        await producer.stop()
        await engine.dispose()

    answer = await asyncio.to_thread(outcome_of, config, delivery, sent.id)
    outcome = json.loads(answer.value())
    assert outcome["status"] == "accepted" and outcome["subject_type"] == sent.type, outcome
    headers = answer.headers()
    assert dict(headers)["ce_type"] == b"ro.punte.outcome.v1"
    # Signed by the network: it verifies with the published JWKS alone.
    verify_as_a_receiver(network_jwks(NETWORK_KEY, Keyring([])), headers, answer.value())
    assert str(uuid.UUID(dict(headers)["ce_id"].decode())) == dict(headers)["ce_id"].decode()
