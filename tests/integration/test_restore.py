"""Restore from backup (issue #12 item 5): a service whose database is restored from a
backup taken mid-run (pg_dump, pg_restore) catches up from the log. The broker remembers the consumer group's committed
offsets, which are ahead of the restored database; the consumer reads again from what its
inbox recorded, and the inbox and derived ids make the repeats harmless."""
import asyncio
import subprocess
import uuid

import pytest
import sqlalchemy as sa

from punte.embedded import postgres_bin
from runtime.cloudevents import CloudEvent
from runtime.inbox import InboxConsumer, inbox_table
from runtime.kafka import ensure_topics, make_producer
from tests.integration.helpers import ROOT, migrated_database

MIGRATIONS = ROOT / "services" / "audit" / "migrations"  # any service's: the runtime's tables


async def _consume_until(consumer: InboxConsumer, engine, offsets: list[int], timeout: float = 60) -> None:
    """Run ``consumer`` until its inbox holds ``offsets``: committed, not only handled (a
    handler's own effect comes before its transaction commits, and a batch whose commit
    fails is handled again)."""
    task = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(timeout):
            while await _recorded(engine) != offsets:
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _recorded(engine) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(sa.column("offset")).select_from(inbox_table)
                                        .order_by(sa.column("offset")))).scalars())


@pytest.mark.broker
async def test_a_database_restored_from_a_backup_catches_up_from_the_log_without_doubling(infrastructure, tmp_path):
    topic = f"punte.restore-{uuid.uuid4().hex[:8]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])
    engine, sessions = await migrated_database(infrastructure.database_url, "audit", MIGRATIONS)
    applied: list[int] = []

    async def apply(uow, message) -> None:
        applied.append(message.offset)

    def consumer() -> InboxConsumer:
        return InboxConsumer(service="audit", group_id=f"restore-{topic}", bootstrap=infrastructure.kafka_bootstrap,
                             sessions=sessions, handler=apply, topics=[topic], attempts=1)

    backup = tmp_path / "backup.dump"
    try:
        await _send(infrastructure.kafka_bootstrap, topic, range(5))
        await _consume_until(consumer(), engine, list(range(5)))
        await _pg("pg_dump", "-Fc", "-f", str(backup), url=engine.url)  # a backup taken mid-run
        await _send(infrastructure.kafka_bootstrap, topic, range(5, 10))
        await _consume_until(consumer(), engine, list(range(10)))
        # The database is restored from the backup: what it recorded since is gone.
        await engine.dispose()
        await _pg("pg_restore", "--clean", "--if-exists", str(backup), url=engine.url)
        assert await _recorded(engine) == list(range(5))
        applied.clear()
        await _consume_until(consumer(), engine, list(range(10)))
        # Read again from the restored inbox's position, each once (a batch handled again
        # after a failed commit is rolled back with it: what committed is in the inbox).
        assert sorted(set(applied)) == [5, 6, 7, 8, 9]
    finally:
        await engine.dispose()


async def _send(bootstrap: str, topic: str, numbers) -> None:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        for n in numbers:
            event = CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake", {"n": n}, id=f"event-{n}")
            await producer.send_and_wait(topic, event.body(), headers=event.headers())
    finally:
        await producer.stop()


async def _pg(tool: str, *arguments: str, url) -> None:
    """PostgreSQL's own backup tools, as an operator runs them."""
    where = ["-h", url.host, "-p", str(url.port), "-U", url.username or "postgres", "-d", url.database]
    await asyncio.to_thread(subprocess.run, [str(postgres_bin() / tool), *where, *arguments],
                            check=True, capture_output=True)
