"""Ingress topics keep reports for a short time only (issue #11): while reports in clear are
still accepted, a clear copy must not linger on the broker. Topics are created with the
retention of contracts/reference/retention.yaml (`ingress_days`) as `retention.ms`, and
the broker (the embedded Tansu, or Apache Kafka with --broker kafka) says so when asked."""
from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import MessageSizeTooLargeError

from runtime.kafka import DAY_MS, client_options, ensure_topics, make_producer, topic_configs
from runtime.settings import Settings

MAX_MESSAGE_BYTES = 320 * 1024  # contracts/topics.yaml, ingress and gateway topics


async def retention_ms(bootstrap: str, topic: str) -> str | None:
    return await topic_config(bootstrap, topic, "retention.ms")


async def topic_config(bootstrap: str, topic: str, name: str) -> str | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options())
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    [(_, _, _, _, entries)] = response.resources
    return next((entry[1] for entry in entries if entry[0] == name), None)


def test_only_ingress_topics_get_the_short_retention_and_the_size_limit():
    configs = topic_configs([("punte.ingress.isj-bc", 1), ("punte.gateway", 3), ("punte.cases", 3),
                             ("punte.deadletter", 1)], days=3)
    sized = {"retention.ms": str(3 * DAY_MS), "max.message.bytes": str(MAX_MESSAGE_BYTES)}
    assert configs == {"punte.ingress.isj-bc": sized, "punte.gateway": sized}
    # A little above what the services take (PUNTE_INGRESS_MAX_MESSAGE_BYTES), so a message
    # just over theirs reaches them and is answered TOO_LARGE rather than lost at the broker.
    assert Settings().ingress_max_message_bytes < MAX_MESSAGE_BYTES <= Settings().ingress_max_message_bytes + 128 * 1024


@pytest.mark.broker
async def test_ingress_topics_are_created_with_a_short_retention_and_the_others_without(infrastructure):
    bootstrap = infrastructure.kafka_bootstrap
    ingress, internal = f"punte.ingress.isj-bc-{uuid.uuid4().hex[:6]}", f"punte.cases-{uuid.uuid4().hex[:6]}"
    # Not the schedule's 7 days: Apache Kafka's own default is 7 days too, and a topic created
    # without the setting would pass as well.
    days = 3
    plan = [(ingress, 1), (internal, 1)]
    await ensure_topics(bootstrap, plan, configs=topic_configs(plan, days))
    assert await retention_ms(bootstrap, ingress) == str(days * DAY_MS)
    assert await retention_ms(bootstrap, internal) != str(days * DAY_MS)
    assert await topic_config(bootstrap, ingress, "max.message.bytes") == str(MAX_MESSAGE_BYTES)


@pytest.mark.broker
async def test_apache_kafka_refuses_a_record_over_the_ingress_topics_maximum(infrastructure):
    """What max.message.bytes does: Apache Kafka refuses the record (the producer gets
    MESSAGE_TOO_LARGE, nobody an outcome). The embedded Tansu stores the setting and takes
    the record anyway; intake then answers TOO_LARGE (docs/contracts.md, "Message size")."""
    bootstrap = infrastructure.kafka_bootstrap
    ingress = f"punte.ingress.isj-bc-{uuid.uuid4().hex[:6]}"
    await ensure_topics(bootstrap, [(ingress, 1)], configs=topic_configs([(ingress, 1)], 3))
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(ingress, b"x" * (300 * 1024))  # over intake's limit, under the topic's
        if infrastructure.kafka is None:
            await producer.send_and_wait(ingress, b"x" * (400 * 1024))
        else:
            with pytest.raises(MessageSizeTooLargeError):
                await producer.send_and_wait(ingress, b"x" * (400 * 1024))
    finally:
        await producer.stop()
