"""`punte status` reads each consumer group's lag from the broker's offsets, not from its
messages (decision 0038): what a group has not committed past on the network's partitions,
against their true ends; a topic that is not the network's does not count."""
from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from contracts.reference import delivery_topic
from punte.status import consumer_lag
from runtime.kafka import client_options, ensure_topics, make_producer


@pytest.mark.broker
async def test_a_group_is_as_far_behind_as_it_has_not_committed(infrastructure):
    bootstrap = infrastructure.kafka_bootstrap
    topic, handmade = delivery_topic("spas-zemes"), f"punte.handmade-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [(handmade, 1)])
    group = f"punte-lag-{uuid.uuid4().hex[:8]}"
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        # In one batch: the embedded broker's ListOffsets undercounts those, the lag must not.
        sent = [await producer.send(topic, b"synthetic", key=b"k") for _ in range(5)]
        await producer.flush()
        offsets = [(await delivered).offset for delivered in sent]
        await producer.send_and_wait(handmade, b"synthetic", key=b"k")
    finally:
        await producer.stop()
    # The group has read the first two of the five, and all of the hand-made topic.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                **client_options())
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(handmade, 0)])
        await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(offsets[2], ""),
                               TopicPartition(handmade, 0): OffsetAndMetadata(0, "")})
    finally:
        await consumer.stop()

    lag = await consumer_lag(bootstrap, {group})
    assert lag[group] == {f"{topic}[0]": 3}
    assert all(not name.startswith(handmade) for behind in lag.values() for name in behind)
