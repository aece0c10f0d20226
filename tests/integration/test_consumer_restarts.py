"""A consumer restarted while its client is still stopping (decision 0026's hold and go: the
broker went empty, then a new epoch came) leaves nothing behind. aiokafka's stop, cancelled
half-way, leaves its fetcher, its group coordinator and their connections running: a ghost
that holds the group's next join until its session expires, and keeps connecting to the old
broker for as long as the process lives. On a broker of this test's own, paused with SIGSTOP
so that the stop hangs while the second restart comes."""
from __future__ import annotations

import asyncio
import uuid

import psutil

from punte.embedded import EmbeddedBroker
from runtime.inbox import InboxConsumer
from runtime.kafka import ensure_topics
from tests.integration.helpers import REFERRAL_MIGRATIONS, cancelled, eventually, migrated_database


def connections_to(bootstrap: str) -> int:
    """This process's open TCP connections to the broker, as `ss -tnp` would list them."""
    port = int(bootstrap.rsplit(":", 1)[1])
    return sum(1 for c in psutil.Process().net_connections("tcp")
               if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


async def test_a_consumer_restarted_while_its_client_stops_leaves_no_client_behind(infrastructure, tmp_path):
    engine, sessions = await migrated_database(infrastructure.database_url, "restarts", REFERRAL_MIGRATIONS)
    broker = EmbeddedBroker(log_file=tmp_path / "broker.log").start()
    topic, group = f"t.restarts.{uuid.uuid4().hex[:8]}", f"restarts-{uuid.uuid4().hex[:8]}"

    async def handler(uow, message) -> None:
        return None

    try:
        await ensure_topics(broker.bootstrap, [(topic, 1)])
        consumer = InboxConsumer(service="referral", group_id=group, bootstrap=broker.bootstrap,
                                 sessions=sessions, handler=handler, topics=[topic])
        task = asyncio.create_task(consumer.run())
        try:
            await eventually(lambda: consumer.joined and consumer.assigned)
            broker.pause()
            try:
                consumer.hold()  # the broker went empty: the client stops (its LeaveGroup hangs)
                await asyncio.sleep(1)
                consumer.go(rewind=True)  # a new epoch, while that stop still waits
                await asyncio.sleep(0.5)
            finally:
                broker.resume()
            await eventually(lambda: consumer.joined and consumer.assigned)
        finally:
            await cancelled(task)

        def none_connected() -> bool:
            """the stopped consumer holds no connection to the broker: none of its clients lives on"""
            return connections_to(broker.bootstrap) == 0
        await eventually(none_connected, timeout=5)
    finally:
        broker.stop()
        await engine.dispose()
