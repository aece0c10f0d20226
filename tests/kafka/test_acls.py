"""The broker's own refusals (issue #13): after `punte kafka apply` on a three-node Apache
Kafka cluster with SCRAM and the StandardAuthorizer, each principal connects with the
runtime's own clients (runtime.kafka, settings as the environment gives them) and can do
what contracts/kafka_acls.py grants, and nothing else."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka.errors import TopicAuthorizationFailedError
from confluent_kafka import Consumer

from contracts.reference import delivery_topic, ingress_topic
from punte.kafka_admin import apply_network
from runtime.kafka import make_consumer, make_producer
from tests.brokers import Network

pytestmark = pytest.mark.kafka

MINE, OTHER = "das-bacau", "dgaspc-bc"
INTERNAL = ["punte.cases", "punte.referrals", "punte.access", "punte.deadletter"]


@pytest.fixture
def network(kafka_network: Network) -> Network:
    return kafka_network


async def _send(network: Network, user: str, topic: str) -> None:
    producer = make_producer(network.cluster.bootstrap, network.settings(user))
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, b"synthetic", key=b"k"), 60)
    finally:
        await producer.stop()


async def _read(network: Network, user: str, topic: str, group: str) -> list[bytes]:
    """What ``user`` reads of ``topic`` from its start in ``group``, with the runtime's consumer."""
    consumer = make_consumer(network.cluster.bootstrap, group, 100, network.settings(user))
    await consumer.start()
    try:
        consumer.subscribe([topic])
        deadline = asyncio.get_running_loop().time() + 30
        records: list[bytes] = []
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            more = [r.value for batch in batches.values() for r in batch]
            if records and not more:  # all there was
                return records
            records += more
        return records
    finally:
        await consumer.stop()


def _refusal(network: Network, user: str, topic: str, group: str) -> str | None:
    """The broker's error code name when ``user`` subscribes to ``topic`` in ``group``, None
    if it is let in. aiokafka only logs a refused subscription ("Topic ... is not authorized")
    and reads nothing; librdkafka hands the broker's error to the caller, so it is asked here."""
    consumer = Consumer({**network.cluster.admin_config(), "sasl.username": user,
                         "sasl.password": network.passwords[user], "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", "log_level": 0})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None:
                return message.error().name() if message.error() else None
        return None
    finally:
        consumer.close()


def test_apply_is_idempotent_and_keeps_every_password_private(network: Network):
    again = apply_network(network.cluster.admin_config(), network.credentials_file)
    assert not again.changed() and not again.warnings
    assert network.credentials_file.stat().st_mode & 0o077 == 0
    assert set(network.passwords) >= {MINE, OTHER, "punte-intake", "punte-audit"}


async def test_an_institution_writes_its_ingress_and_reads_its_delivery(network: Network):
    await _send(network, MINE, ingress_topic(MINE))
    await _send(network, "punte-intake", delivery_topic(MINE))  # an outcome, as intake sends it
    # The end-to-end flows on the same cluster may have told this institution of cases too.
    assert b"synthetic" in await _read(network, MINE, delivery_topic(MINE), group=f"{MINE}.inbox")
    assert await _read(network, "punte-intake", ingress_topic(MINE), group="punte-intake-acl-test")


async def test_an_institution_cannot_write_another_institutions_ingress(network: Network):
    with pytest.raises(TopicAuthorizationFailedError):
        await _send(network, MINE, ingress_topic(OTHER))


async def test_an_institution_cannot_read_another_delivery_or_any_internal_topic(network: Network):
    await _send(network, "punte-intake", delivery_topic(OTHER))  # something there to read
    for topic in [delivery_topic(OTHER), *INTERNAL]:
        assert _refusal(network, MINE, topic, f"{MINE}.reader") == "TOPIC_AUTHORIZATION_FAILED", topic
    # Nor write where the network speaks: its own delivery topic, the cases.
    for topic in [delivery_topic(MINE), "punte.cases"]:
        with pytest.raises(TopicAuthorizationFailedError):
            await _send(network, MINE, topic)


def test_an_institution_cannot_use_another_institutions_consumer_group(network: Network):
    refused = _refusal(network, MINE, delivery_topic(MINE), f"{OTHER}.inbox-{uuid.uuid4().hex[:6]}")
    assert refused == "GROUP_AUTHORIZATION_FAILED"


async def test_a_service_cannot_write_an_institutions_ingress(network: Network):
    for service in ("punte-intake", "punte-referral", "punte-notification", "punte-audit"):
        with pytest.raises(TopicAuthorizationFailedError):
            await _send(network, service, ingress_topic(MINE))
