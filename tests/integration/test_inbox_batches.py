"""Batch-first consumers (issue #14, item 2; decision 0033): a polled batch is applied in
its transaction with no savepoint, not one per message; when a message fails, the batch is
applied again in savepoints and the failing message is found by splitting it in halves.
Every good message is applied exactly once, in order, and the failing one is dead-lettered
as before. On the real PostgreSQL."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import sqlalchemy as sa

from runtime.cloudevents import CloudEvent
from runtime.inbox import DEAD_LETTER_TOPIC, InboxConsumer, Message, UnitOfWork
from runtime.outbox import outbox_table
from tests.integration.helpers import message, migrated_database

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "intake" / "migrations"
ATTEMPTS = 2


@pytest.fixture
async def database(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "batches", MIGRATIONS)
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE applied (seq bigserial PRIMARY KEY, n int NOT NULL)"))
    yield engine, sessions
    await engine.dispose()


def event(n: int) -> CloudEvent:
    return CloudEvent.new("ro.punte.test.v1", "/punte/test", {"n": n})


class Statements:
    """The SAVEPOINT statements the engine sends."""

    def __init__(self, engine) -> None:
        self.engine, self.savepoints = engine.sync_engine, 0

    def _note(self, conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("SAVEPOINT"):
            self.savepoints += 1

    def __enter__(self) -> "Statements":
        sa.event.listen(self.engine, "before_cursor_execute", self._note)
        return self

    def __exit__(self, *exc) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._note)


def consumer(sessions, poison: set[int]) -> InboxConsumer:
    async def handle(uow: UnitOfWork, msg: Message) -> None:
        n = json.loads(msg.value)["n"]
        await uow.session.execute(sa.text("INSERT INTO applied (n) VALUES (:n)"), {"n": n})
        uow.outbox.emit("out", event(n))
        if n in poison:
            raise ValueError("this message cannot be applied")

    return InboxConsumer(service="intake", group_id="unused", bootstrap="unused", sessions=sessions,
                         handler=handle, attempts=ATTEMPTS)


async def applied(engine) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.text("SELECT n FROM applied ORDER BY seq"))).scalars())


async def test_a_polled_batch_is_applied_with_no_savepoint(database):
    engine, sessions = database
    inbox = consumer(sessions, poison=set())
    with Statements(engine) as statements:
        await inbox.process([message("in", event(n), offset=n) for n in range(50)])
    assert await applied(engine) == list(range(50))
    assert statements.savepoints == 0, "the batch in its transaction: no savepoint, not one per message"
    assert inbox.processed == 50


async def test_a_batch_applied_again_after_a_failure_counts_its_duplicates_once(database):
    engine, sessions = database
    inbox = consumer(sessions, poison={5})
    first = [message("in", event(n), offset=n) for n in range(3)]
    await inbox.process(first)
    # Two of them again (a redelivery) before new messages with a poison one among them: the
    # batch fails whole, and is applied again in savepoints.
    await inbox.process([*first[:2], *(message("in", event(n), offset=n) for n in range(3, 8))])
    assert inbox.duplicates == 2
    assert await applied(engine) == [0, 1, 2, 3, 4, 6, 7]
    assert inbox.dead_lettered == 1 and inbox.processed == 8


async def test_a_failing_message_is_found_by_halving_and_the_rest_apply_once_in_order(database):
    engine, sessions = database
    inbox = consumer(sessions, poison={37})
    batch = [message("in", event(n), offset=n) for n in range(64)]
    with Statements(engine) as statements:
        await inbox.process(batch)
    assert await applied(engine) == [n for n in range(64) if n != 37]
    # Halving: the batch, then two halves per level down to the message (6 levels for 64),
    # then its own attempts; one savepoint per message would be 64 or more.
    assert statements.savepoints <= 1 + 2 * int(math.log2(64)) + ATTEMPTS
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox_table.c.topic, outbox_table.c.payload)
                                   .order_by(outbox_table.c.id))).all()
    outs = [json.loads(r.payload)["n"] for r in rows if r.topic == "out"]
    assert outs == [n for n in range(64) if n != 37], "each good message's event once, in order"
    dead = [json.loads(r.payload) for r in rows if r.topic == DEAD_LETTER_TOPIC]
    assert [(d["offset"], d["reason"]["code"]) for d in dead] == [(37, "PROCESSING_FAILED")]
    assert inbox.dead_lettered == 1 and inbox.processed == 64


async def test_two_failing_messages_in_one_batch_are_each_dead_lettered(database):
    engine, sessions = database
    inbox = consumer(sessions, poison={3, 11})
    await inbox.process([message("in", event(n), offset=n) for n in range(16)])
    assert await applied(engine) == [n for n in range(16) if n not in (3, 11)]
    async with engine.connect() as conn:
        dead = [json.loads(p)["offset"] for p in (await conn.execute(
            sa.select(outbox_table.c.payload).where(outbox_table.c.topic == DEAD_LETTER_TOPIC)
            .order_by(outbox_table.c.id))).scalars()]
    assert dead == [3, 11]


def test_a_quiet_consumer_lets_the_broker_hold_its_fetches_longer_until_records_come():
    from runtime.inbox import FetchPace
    pace = FetchPace(busy_ms=50, idle_ms=1000, idle_after=5.0)
    start = 1000.0
    assert pace.wait_after(True, start) == 50, "records: the short wait"
    assert pace.wait_after(False, start + 1) == 50, "a short lull keeps the short wait"
    assert pace.wait_after(False, start + 6) == 1000, "nothing for 5 s: the long wait"
    assert pace.wait_after(True, start + 7) == 50, "the first records bring the short wait back"
    assert pace.wait_after(False, start + 8) == 50


@pytest.mark.broker
async def test_the_fetch_wait_is_changed_on_the_running_client_and_records_still_come(infrastructure):
    """aiokafka has no setter for the fetch wait and minimum: FetchPace sets the attributes
    its fetcher reads for every request. This fails if a new aiokafka moves them."""
    import asyncio
    import uuid

    from runtime.inbox import FetchPace
    from runtime.kafka import ensure_topics, make_consumer, make_producer

    topic = f"test.pace.{uuid.uuid4().hex[:6]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])
    consumer = make_consumer(infrastructure.kafka_bootstrap, None, 10, fetch_max_wait_ms=50)
    consumer.subscribe([topic])
    await consumer.start()
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    try:
        pace = FetchPace(busy_ms=50, idle_ms=800, idle_after=0.0, busy_min_bytes=1 << 20)
        pace.polled(consumer, got_records=False)
        assert consumer._fetcher._fetch_max_wait_ms == 800 and pace.current == 800
        assert consumer._fetcher._fetch_min_bytes == 1
        await producer.send_and_wait(topic, b"x")
        got: list = []
        for _ in range(100):
            polled = await consumer.getmany(timeout_ms=200)
            got += [r for batch in polled.values() for r in batch]
            if got:
                break
            await asyncio.sleep(0)
        assert [r.value for r in got] == [b"x"]
        pace.polled(consumer, got_records=True)
        assert consumer._fetcher._fetch_max_wait_ms == 50
        assert consumer._fetcher._fetch_min_bytes == 1 << 20
        # Busy, far less than the minimum is new: the broker answers when the wait ends.
        await producer.send_and_wait(topic, b"y")
        got = []
        for _ in range(100):
            polled = await consumer.getmany(timeout_ms=200)
            got += [r for batch in polled.values() for r in batch]
            if got:
                break
        assert [r.value for r in got] == [b"y"]
    finally:
        await producer.stop()
        await consumer.stop()


async def test_after_applied_is_called_once_a_batch_commits_and_not_for_duplicates(database):
    """What waits on a consumer's work in its process (the audit tree) is told when a batch
    that applied messages has committed, and only then."""
    engine, sessions = database
    told: list[int] = []

    async def handle(uow: UnitOfWork, msg: Message) -> None:
        async with engine.connect() as other:  # another connection: what is committed
            told_before = len((await other.execute(sa.text("SELECT n FROM applied"))).all())
        await uow.session.execute(sa.text("INSERT INTO applied (n) VALUES (:n)"), {"n": told_before})

    inbox = InboxConsumer(service="intake", group_id="unused", bootstrap="unused", sessions=sessions,
                          handler=handle, after_applied=lambda: told.append(len(told)))
    batch = [message("in", event(n), offset=n) for n in range(3)]
    await inbox.process(batch)
    assert told == [0] and len(await applied(engine)) == 3
    await inbox.process(batch)  # the same again: nothing applied, nobody told
    assert told == [0]
