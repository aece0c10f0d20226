"""`punte status` compares the audit trail with the network's topics only: a topic made by
hand with the same prefix is not the network's, and on Apache Kafka the audit is granted no
read of it, so counting it would leave the books open for ever."""
from __future__ import annotations

import uuid

import pytest

from contracts.reference import delivery_topic
from punte.status import topic_messages
from runtime.kafka import ensure_topics, make_producer


@pytest.mark.broker
async def test_a_hand_made_punte_topic_is_not_counted_and_a_network_topic_is(infrastructure):
    handmade = f"punte.handmade-{uuid.uuid4().hex[:8]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(handmade, 1)])
    before = await topic_messages(infrastructure.kafka_bootstrap)
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(handmade, b"synthetic", key=b"k")
        assert await topic_messages(infrastructure.kafka_bootstrap) == before
        await producer.send_and_wait(delivery_topic("spas-zemes"), b"synthetic", key=b"k")
    finally:
        await producer.stop()
    assert await topic_messages(infrastructure.kafka_bootstrap) == before + 1
