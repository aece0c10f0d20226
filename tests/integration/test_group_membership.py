"""Readiness and a real consumer-group rebalance on the test broker (decision 0029): a second
replica joins a group whose topic has one partition. The group takes the partition back and
hands it out again; one member ends with nothing. Both stay joined, the state readiness
reads (tests/unit/test_runtime_health.py shows what /health/ready makes of it)."""
from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from runtime.inbox import InboxConsumer
from runtime.kafka import ensure_topics, make_admin, make_consumer
from tests.integration.helpers import REFERRAL_MIGRATIONS, eventually, migrated_database


async def test_both_replicas_stay_joined_through_a_rebalance_though_one_gets_no_partition(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "membership", REFERRAL_MIGRATIONS)
    topic, group = f"t.membership.{uuid.uuid4().hex[:8]}", f"membership-{uuid.uuid4().hex[:8]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])

    async def handler(uow, message) -> None:
        return None

    def replica() -> InboxConsumer:
        return InboxConsumer(service="referral", group_id=group, bootstrap=infrastructure.kafka_bootstrap,
                             sessions=sessions, handler=handler, topics=[topic])

    first, second = replica(), replica()
    tasks = [asyncio.create_task(first.run())]
    try:
        await eventually(lambda: first.joined and first.assigned)
        tasks.append(asyncio.create_task(second.run()))
        # The rebalance: the partition ends with one of them, the other holds none.
        await eventually(lambda: second.joined and first.joined and first.assigned != second.assigned)
        assert first.joined and second.joined
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await engine.dispose()
    assert not first.joined and not second.joined  # a stopped client is not in its group


@pytest.mark.broker
async def test_a_stopped_consumer_leaves_its_group_at_once(infrastructure):
    """A consumer that stops says so to the group coordinator (LeaveGroup), so that the
    replica or restart that takes its partitions over need not wait for its session to
    expire. Tansu numbers a group's first generation 0, where Apache Kafka starts at 1, and
    aiokafka leaves only from generation 1 (runtime.kafka.make_consumer)."""
    topic, group = f"t.leave.{uuid.uuid4().hex[:8]}", f"leave-{uuid.uuid4().hex[:8]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])
    consumer = make_consumer(infrastructure.kafka_bootstrap, group, 10)
    consumer.subscribe([topic])
    await consumer.start()
    try:
        await eventually(lambda: bool(consumer.assignment()))
        assert await _members(infrastructure.kafka_bootstrap, group) == 1
    finally:
        await consumer.stop()
    # Asked at once: the member's session (6 s) has not expired yet.
    assert await _members(infrastructure.kafka_bootstrap, group) == 0


async def _members(bootstrap: str, group: str) -> int:
    admin = make_admin(bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_consumer_groups([group])
        [(_, _, _, _, _, members, *_)] = described.groups
        return len(members)
    finally:
        await admin.close()
