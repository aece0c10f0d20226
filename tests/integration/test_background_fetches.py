"""A background consumer (the audit trail, closures, institutions' commands; decision 0033,
issue #14 step 40) lets the broker hold its fetch until a batch's worth is new or its wait
ends. Records that come in a steady trickle are applied a batch a wait, not one or two at
each answer, which at 20 reports/s cost the audit trail five times the CPU; a record that
comes alone still arrives. On the test broker (Tansu, or Apache Kafka with --broker kafka)
and the real PostgreSQL."""
from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest

from runtime.cloudevents import CloudEvent
from runtime.kafka import ensure_topics, make_producer
from runtime.service import Runtime
from runtime.settings import Settings
from runtime.signing import Keyring
from tests.integration.helpers import REFERRAL_MIGRATIONS, cancelled, eventually, migrated_database

TRICKLE = 500  # records, one every 2 ms: faster than a consumer's round of fetch and commit


@pytest.mark.broker
async def test_a_trickle_reaches_a_background_consumer_in_a_few_batches_and_a_lone_record_still_comes(
        infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "background_fetch", REFERRAL_MIGRATIONS)
    topic = f"t.background.{uuid.uuid4().hex[:8]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])
    rt = Runtime(name="audit", settings=Settings(kafka_bootstrap=infrastructure.kafka_bootstrap), engine=engine,
                 sessions=sessions, producer=None, relay=SimpleNamespace(wake=lambda: None),  # type: ignore[arg-type]
                 verifier=None, network_key=None, keyring=Keyring([]))  # type: ignore[arg-type]
    batches: list[int] = []

    async def one(uow, message) -> None:
        batches.append(1)

    async def many(uow, messages) -> None:
        batches.append(len(messages))

    consumer = rt.consumer(group_id=f"background-{uuid.uuid4().hex[:8]}", topics=[topic], handler=one,
                           batch_handler=many, verify_network=False, background=True)
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    task = asyncio.create_task(consumer.run())

    async def applied(count: int):
        async def check() -> bool:
            """every record sent so far applied"""
            return sum(batches) >= count
        await eventually(check, timeout=30)

    def record(n: int) -> dict:
        event = CloudEvent.new("ro.punte.test.v1", "/punte/test", {"n": n})
        return {"value": event.body(), "key": event.id.encode(), "headers": event.headers()}

    try:
        await eventually(lambda: consumer.joined and consumer.assigned)
        await producer.send_and_wait(topic, **record(0))
        await applied(1)  # alone, it still comes: the broker answers at the end of the wait
        batches.clear()
        for n in range(1, TRICKLE + 1):
            await producer.send(topic, **record(n))
            await asyncio.sleep(0.002)
        await producer.flush()
        await applied(TRICKLE)
        assert sum(batches) == TRICKLE
        # About a second of records, 150 kB, with 1 s waits and 128 KiB asked for: two or
        # three batches. Answered at once, a fetch sent right after the last answer found one
        # to three records at each look (13 batches on Tansu, most of them of 1 to 3 records).
        assert len(batches) <= 5, batches
    finally:
        await cancelled(task)
        await producer.stop()
        await engine.dispose()
