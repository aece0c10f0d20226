"""Reading ahead (issue #14): while a batch's transaction is in PostgreSQL, the consumer takes
the next batch its client already holds and runs the service's pure ``prepare`` on it, so
that Python's work overlaps the database's. Only preparing overlaps: the next batch is
applied, and acknowledged, after this one; a failing ``prepare`` changes nothing; a
consumer stopped meanwhile rolls the batch back. On the real PostgreSQL and broker."""
from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from runtime.cloudevents import CloudEvent
from runtime.inbox import InboxConsumer, Message, UnitOfWork, inbox_table
from runtime.kafka import ensure_topics, make_producer
from tests.integration.helpers import eventually, message, migrated_database

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "intake" / "migrations"


@pytest.fixture
async def database(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "ahead", MIGRATIONS)
    async with engine.begin() as conn:
        await conn.execute(sa.text(
            "CREATE TABLE applied (seq bigserial PRIMARY KEY, part int NOT NULL, n int NOT NULL)"))
    yield engine, sessions
    await engine.dispose()


def event(n: int) -> CloudEvent:
    return CloudEvent.new("ro.punte.test.v1", "/punte/test", {"n": n})


def batch(numbers: range) -> list[Message]:
    return [message("in", event(n), offset=n) for n in numbers]


class Service:
    """A batch handler that records what it applies, and a ``prepare`` that records what it
    was given and whether the batch before had been committed by then."""

    def __init__(self, engine, failing_prepare: bool = False) -> None:
        self.engine = engine
        self.committed = 0  # batches committed (after_applied)
        self.prepared: list[tuple[int, int]] = []  # (n, batches committed when it was prepared)
        # What happened, in order: ("prepared", n), ("handled", n), ("committed", -1).
        self.log: list[tuple[str, int]] = []
        self.failing_prepare = failing_prepare
        self.release = asyncio.Event()
        self.release.set()

    async def handle_many(self, uow: UnitOfWork, messages: list[Message]) -> None:
        await self.release.wait()
        self.log += [("handled", json.loads(m.value)["n"]) for m in messages]
        await uow.session.execute(sa.text("INSERT INTO applied (part, n) VALUES (:part, :n)"), [
            {"part": m.partition, "n": json.loads(m.value)["n"]} for m in messages])

    async def handle(self, uow: UnitOfWork, m: Message) -> None:
        await self.handle_many(uow, [m])

    def prepare(self, m: Message) -> None:
        if self.failing_prepare:
            raise ValueError("a message this service cannot read")
        self.prepared.append((json.loads(m.value)["n"], self.committed))
        self.log.append(("prepared", json.loads(m.value)["n"]))

    def applied_once(self) -> None:
        self.committed += 1
        self.log.append(("committed", -1))

    def consumer(self, sessions, **kwargs) -> InboxConsumer:
        return InboxConsumer(service="intake", group_id=kwargs.pop("group_id", "unused"),
                             bootstrap=kwargs.pop("bootstrap", "unused"), sessions=sessions, handler=self.handle,
                             batch_handler=self.handle_many, prepare=self.prepare,
                             after_applied=self.applied_once, **kwargs)

    async def applied(self) -> list[tuple[int, int]]:
        async with self.engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(sa.text("SELECT part, n FROM applied ORDER BY seq"))]


async def test_the_next_batch_is_prepared_while_this_one_is_written_and_applied_only_after_it(database):
    engine, sessions = database
    service = Service(engine)
    inbox = service.consumer(sessions)
    polls: list[list[Message]] = [batch(range(100, 160))]

    async def poll_ahead() -> list[Message]:
        return polls.pop()

    held, ahead = await inbox.process_reading_ahead(batch(range(100)), [], poll_ahead)
    assert held == []
    # The next batch was handed back, prepared (beginning before this one committed), and
    # not applied.
    assert [json.loads(m.value)["n"] for m in ahead] == list(range(100, 160))
    assert [n for n, _ in service.prepared] == list(range(100, 160))
    assert service.prepared[0][1] == 0
    assert await service.applied() == [(0, n) for n in range(100)]
    assert service.committed == 1

    # The loop applies it next, as it would a polled batch; nothing more is read ahead.
    held, after = await inbox.process_reading_ahead(ahead, [], lambda: asyncio.sleep(0, result=[]))
    assert held == [] and after == []
    assert await service.applied() == [(0, n) for n in range(160)]


async def test_a_failing_prepare_changes_nothing_the_handler_does(database):
    engine, sessions = database
    service = Service(engine, failing_prepare=True)
    inbox = service.consumer(sessions)

    async def poll_ahead() -> list[Message]:
        return batch(range(10, 20))

    held, ahead = await inbox.process_reading_ahead(batch(range(10)), [], poll_ahead)
    assert held == [] and len(ahead) == 10
    assert await service.applied() == [(0, n) for n in range(10)]


async def test_a_poll_ahead_that_fails_leaves_the_batch_to_commit(database):
    engine, sessions = database
    service = Service(engine)
    inbox = service.consumer(sessions)

    async def poll_ahead() -> list[Message]:
        raise ConnectionError("the broker went away")

    held, ahead = await inbox.process_reading_ahead(batch(range(10)), [], poll_ahead)
    assert held == [] and ahead == []
    assert await service.applied() == [(0, n) for n in range(10)]


async def test_a_consumer_stopped_while_reading_ahead_rolls_its_batch_back(database):
    engine, sessions = database
    service = Service(engine)
    service.release.clear()  # the batch's transaction cannot finish
    inbox = service.consumer(sessions)
    polled = asyncio.Event()

    async def poll_ahead() -> list[Message]:
        polled.set()
        await asyncio.Event().wait()  # the next poll never comes back
        return []

    running = asyncio.create_task(inbox.process_reading_ahead(batch(range(10)), [], poll_ahead))
    await polled.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    service.release.set()
    assert await service.applied() == []
    async with engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(inbox_table)) == 0


@pytest.mark.broker
async def test_a_running_consumer_applies_every_message_once_in_order_and_prepares_ahead(infrastructure, database):
    engine, sessions = database
    service = Service(engine)
    topic, group = f"test.ahead.{uuid.uuid4().hex[:8]}", f"ahead-{uuid.uuid4().hex[:8]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 2)])
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    try:
        for n in range(1200):
            sent = event(n)
            await producer.send(topic, sent.body(), partition=n % 2, headers=sent.headers())
        await producer.flush()
    finally:
        await producer.stop()
    inbox = service.consumer(sessions, group_id=group, bootstrap=infrastructure.kafka_bootstrap,
                             topics=[topic], batch_max=100)
    running = asyncio.create_task(inbox.run())
    try:
        async def all_applied() -> bool:
            """every message applied"""
            return len(await service.applied()) >= 1200
        await eventually(all_applied, 60)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    applied = await service.applied()
    for part in (0, 1):
        assert [n for p, n in applied if p == part] == list(range(part, 1200, 2)), "once each, in order"
    # Batches were read ahead (the client held more than a batch): each message of them was
    # prepared before it was handled, and some while the batch before it was being written
    # (handled, not yet committed).
    assert service.prepared and {n for n, _ in service.prepared} < set(range(1200))
    first = {}
    for i, (what, n) in enumerate(service.log):
        first.setdefault((what, n), i)
    assert all(first[("prepared", n)] < first[("handled", n)] for n, _ in service.prepared)
    writing = False
    overlapped = 0
    for what, _ in service.log:
        writing = what == "handled" or (writing and what != "committed")
        overlapped += writing and what == "prepared"
    assert overlapped > 0
