"""An idle consumer walks its partitions only when something happens (issue #14: the idle
network's CPU). aiokafka's fetcher looked over every assigned partition every 200 ms besides
each answer, the inbox loop made a pass every 200 ms, and a consumer subscribed by pattern
asked for the metadata of every topic every 5 s, all with nothing to do: on a consumer of
~150-300 partitions that was most of an idle service's CPU. Records still end the waits at
once. What is counted is the client's own doing, so the test runs on the embedded broker
only (not again on Apache Kafka, where it passed too: ~13 s of the suite's budget), with the
real PostgreSQL."""
from __future__ import annotations

import asyncio
import re
import uuid
from types import SimpleNamespace

from runtime.cloudevents import CloudEvent
from runtime.kafka import ensure_topics, make_producer
from runtime.service import Runtime
from runtime.settings import Settings
from runtime.signing import Keyring
from tests.integration.helpers import REFERRAL_MIGRATIONS, cancelled, eventually, migrated_database

PARTITIONS = 50
WINDOW_S = 7.0
# The broker holds each fetch this long when nothing is new (Tansu answers after half of it):
# the fetcher's answers alone wake it once or twice in the window.
HELD_FETCH_MS = 4000


async def test_an_idle_consumer_walks_its_partitions_only_when_something_happens(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "idle_consumer", REFERRAL_MIGRATIONS)
    topic = f"t.idle.{uuid.uuid4().hex[:8]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, PARTITIONS)])
    settings = Settings(kafka_bootstrap=infrastructure.kafka_bootstrap, kafka_fetch_max_wait_ms=HELD_FETCH_MS)
    rt = Runtime(name="referral", settings=settings, engine=engine, sessions=sessions, producer=None,  # type: ignore[arg-type]
                 relay=SimpleNamespace(wake=lambda: None), verifier=None, network_key=None,  # type: ignore[arg-type]
                 keyring=Keyring([]))
    applied: list[str] = []

    async def one(uow, message) -> None:
        applied.append(message.event.id)

    async def many(uow, messages) -> None:
        applied.extend(m.event.id for m in messages)

    # By pattern, as intake, referral and the audit trail read the institutions' topics.
    consumer = rt.consumer(group_id=f"idle-{uuid.uuid4().hex[:8]}", pattern=f"^{re.escape(topic)}$", handler=one,
                           batch_handler=many, verify_network=False)
    task = asyncio.create_task(consumer.run())
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    try:
        await eventually(lambda: consumer.joined and len(_assigned(consumer)) == PARTITIONS, timeout=30)
        await asyncio.sleep(1.0)  # the first fetches of every partition answered
        client = consumer._client
        assert client is not None
        fetcher, cluster = client._fetcher, client._client.cluster
        walks, passes, refreshes = [0], [0], [0]
        walk, rewound, update = fetcher._get_actions_per_node, consumer._commit_rewound, cluster.update_metadata

        def counted_walk(assignment):
            walks[0] += 1
            return walk(assignment)

        async def counted_pass(*args):
            passes[0] += 1
            return await rewound(*args)

        def counted_update(metadata):
            refreshes[0] += 1
            return update(metadata)

        fetcher._get_actions_per_node = counted_walk
        consumer._commit_rewound = counted_pass  # type: ignore[method-assign]
        cluster.update_metadata = counted_update
        await asyncio.sleep(WINDOW_S)
        # 200 ms wakes: about 35 walks and 35 passes in the window, with nothing new, and a
        # metadata refresh of every topic every 5 s. Now one walk and one pass a second, a walk
        # per answer of the held fetch, and no refresh before 30 s from the one at the join.
        assert walks[0] <= 14, f"{walks[0]} walks over {PARTITIONS} partitions in {WINDOW_S} s idle"
        assert passes[0] <= 10, f"{passes[0]} inbox passes in {WINDOW_S} s idle"
        assert refreshes[0] == 0, f"{refreshes[0]} metadata refreshes of every topic in {WINDOW_S} s idle"

        # Nothing is slower to come for it: a record ends the waits.
        event = CloudEvent.new("ro.punte.test.v1", "/punte/test", {"n": 1})
        await producer.send_and_wait(topic, value=event.body(), key=event.id.encode(), headers=event.headers())

        async def arrived() -> bool:
            """the record sent to the idle consumer applied"""
            return event.id in applied
        await eventually(arrived, timeout=30)
    finally:
        await cancelled(task)
        await producer.stop()
        await engine.dispose()


def _assigned(consumer) -> set:
    client = consumer._client
    return client.assignment() if client is not None else set()
