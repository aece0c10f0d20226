"""The runtime's broker readers on Apache Kafka: what the audit's tail check and `punte
status` compare with must see every partition, as they do on Tansu (which answers a
metadata request for no topic with all of them, where Kafka answers with none)."""
from __future__ import annotations

import pytest

from punte.status import topic_messages
from runtime.kafka import make_producer, partition_bounds
from tests.brokers import Network

pytestmark = pytest.mark.kafka


async def test_partition_bounds_sees_every_partition_on_apache_kafka(kafka_network: Network):
    settings = kafka_network.settings("punte-audit")  # the audit service reads them so
    producer = make_producer(kafka_network.cluster.bootstrap, kafka_network.settings("punte-intake"))
    await producer.start()
    try:
        for key in (b"a", b"b", b"c", b"d"):
            await producer.send_and_wait("punte.cases", b"synthetic", key=key)
    finally:
        await producer.stop()
    bounds = await partition_bounds(kafka_network.cluster.bootstrap, r"^punte\.cases$", settings=settings)
    assert sorted(bounds) == [("punte.cases", 0), ("punte.cases", 1), ("punte.cases", 2)]
    assert sum(end - first for first, end in bounds.values()) >= 4


async def test_status_counts_the_messages_on_apache_kafka(kafka_network: Network):
    producer = make_producer(kafka_network.cluster.bootstrap, kafka_network.settings("punte-referral"))
    await producer.start()
    try:
        await producer.send_and_wait("punte.referrals", b"synthetic", key=b"k")
    finally:
        await producer.stop()
    admin = kafka_network.settings("punte-audit")
    assert await topic_messages(kafka_network.cluster.bootstrap, settings=admin) >= 1
