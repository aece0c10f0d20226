"""The delivery guarantees of the shared runtime, against real PostgreSQL and the broker."""
from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from runtime.cloudevents import CloudEvent
from runtime.inbox import DEAD_LETTER_TOPIC, InboxConsumer, Message, UnitOfWork
from runtime.kafka import ensure_topics, make_producer
from runtime.outbox import Outbox, OutboxRelay, outbox_table
from tests.integration.helpers import message, migrated_database, read_topic

# Intake's migrations carry the runtime tables; its own tables are unused here.
MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "intake" / "migrations"


@pytest.fixture
async def database(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "runtime", MIGRATIONS)
    yield engine, sessions
    await engine.dispose()


# A synthetic, mistyped CNP: a value that must never reach a dead letter's reason or a log.
MISTYPED_CNP = "5010101040O17"


def event(n: int, case: str) -> CloudEvent:
    return CloudEvent.new("ro.punte.test.v1", "/punte/test", {"n": n, "case_id": case})


@pytest.mark.broker
async def test_relay_publishes_every_row_once_in_key_order_with_two_replicas(infrastructure, database):
    engine, sessions = database
    topic = f"test.outbox.{uuid.uuid4().hex[:6]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 3)])
    async with sessions() as session, session.begin():
        outbox = Outbox(session)
        for n in range(60):
            outbox.emit(topic, event(n, f"case-{n % 4}"), key=f"case-{n % 4}")
        await outbox.flush()

    producers = [make_producer(infrastructure.kafka_bootstrap) for _ in range(2)]
    for p in producers:
        await p.start()
    relays = [OutboxRelay(engine, p, batch_max=7) for p in producers]
    try:
        async def drain(relay: OutboxRelay) -> None:
            while await relay.publish_batch() or await _pending(engine):
                await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*(drain(r) for r in relays)), 30)
    finally:
        for p in producers:
            await p.stop()

    records = await read_topic(infrastructure.kafka_bootstrap, topic, 60)
    numbers = [json.loads(r.value)["n"] for r in records]
    assert sorted(numbers) == list(range(60)), "every row published exactly once"
    for case in range(4):
        in_partition = [json.loads(r.value)["n"] for r in records if r.key == f"case-{case}".encode()]
        assert in_partition == sorted(in_partition), f"case-{case} kept its order"
    assert sum(r.published for r in relays) == 60
    assert await _pending(engine) == 0


@pytest.mark.broker
async def test_a_commit_during_the_relays_pass_is_published_without_waiting_for_the_poll(infrastructure, database):
    """The relay is woken by commits (decision 0033) and polls rarely: a wake that comes
    while it is publishing must send it round again, not be lost until the poll."""
    engine, sessions = database
    topic = f"test.outbox.{uuid.uuid4().hex[:6]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    relay = OutboxRelay(engine, producer, poll_seconds=600)
    publish, passes = relay.publish_batch, 0

    async def a_commit_lands_meanwhile() -> int:
        nonlocal passes
        passes += 1
        sent = await publish()
        if passes == 1:  # a consumer commits its events while the first pass publishes
            async with sessions() as session, session.begin():
                outbox = Outbox(session)
                outbox.emit(topic, event(2, "c"))
                await outbox.flush()
            relay.wake()
        return sent

    relay.publish_batch = a_commit_lands_meanwhile  # type: ignore[method-assign]
    async with sessions() as session, session.begin():
        outbox = Outbox(session)
        outbox.emit(topic, event(1, "c"))
        await outbox.flush()
    task = asyncio.create_task(relay.run())
    try:
        async def both_published() -> bool:
            return relay.published == 2
        deadline = asyncio.get_running_loop().time() + 20  # far less than the 600 s poll
        while not await both_published():
            assert asyncio.get_running_loop().time() < deadline, "the wake was lost: the row waits for the poll"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
    assert await _pending(engine) == 0


async def _pending(engine) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(sa.select(sa.func.count()).select_from(outbox_table)
                                 .where(outbox_table.c.published_at.is_(None)))


async def test_outbox_rows_commit_and_roll_back_with_the_state_change(database):
    engine, sessions = database
    with pytest.raises(RuntimeError):
        async with sessions() as session, session.begin():
            outbox = Outbox(session)
            outbox.emit("t", event(1, "c"))
            await outbox.flush()
            raise RuntimeError("the state change failed")
    assert await _pending(engine) == 0


def consumer(sessions, handler, **kwargs) -> InboxConsumer:
    return InboxConsumer(service="intake", group_id="unused", bootstrap="unused", sessions=sessions,
                         handler=handler, attempts=2, **kwargs)


async def test_a_redelivered_batch_has_no_second_effect(database):
    engine, sessions = database
    applied: list[int] = []

    async def handle(uow: UnitOfWork, msg: Message) -> None:
        applied.append(json.loads(msg.value)["n"])
        uow.outbox.emit("out", event(json.loads(msg.value)["n"], "c"))

    batch = [message("in", event(n, "c"), offset=n) for n in range(5)]
    inbox = consumer(sessions, handle)
    await inbox.process(batch)
    await inbox.process(batch)  # the broker redelivers after a crash before the offset commit
    await inbox.process([batch[2], batch[2]])  # and a sender replays one event twice
    assert applied == [0, 1, 2, 3, 4]
    assert inbox.duplicates == 7
    assert await _pending(engine) == 5


async def test_a_failing_message_is_dead_lettered_and_the_rest_of_its_batch_applies(database):
    engine, sessions = database

    async def handle(uow: UnitOfWork, msg: Message) -> None:
        n = json.loads(msg.value)["n"]
        uow.outbox.emit("out", event(n, "c"))  # must not survive the failed try
        if n == 1:
            raise ValueError(f"cannot apply CNP {MISTYPED_CNP}")

    inbox = consumer(sessions, handle)
    await inbox.process([message("in", event(n, "c"), offset=n) for n in range(3)])
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox_table.c.topic, outbox_table.c.payload)
                                   .order_by(outbox_table.c.id))).all()
    topics = [r.topic for r in rows]
    assert topics.count("out") == 2 and topics.count(DEAD_LETTER_TOPIC) == 1
    assert topics == ["out", DEAD_LETTER_TOPIC, "out"], "events stay in message order"
    dead = json.loads(next(r.payload for r in rows if r.topic == DEAD_LETTER_TOPIC))
    assert dead["reason"]["code"] == "PROCESSING_FAILED"
    # The type and where it was raised; the message may hold input values, so it stays out.
    assert "ValueError" in dead["reason"]["message_en"] and "test_outbox_inbox.py" in dead["reason"]["message_en"]
    assert MISTYPED_CNP not in json.dumps(dead["reason"])
    assert dead["offset"] == 1 and dead["topic"] == "in"
    # Where it was and its digest, never its body (issue #11): the body stays sealed.
    assert "payload_base64" not in dead
    assert dead["value_sha256"] == hashlib.sha256(event(1, "c").body()).hexdigest()
    assert inbox.dead_lettered == 1 and inbox.processed == 3


async def test_a_failing_sql_statement_leaves_its_values_out_of_the_dead_letter_and_the_log(database):
    from sqlalchemy.exc import DBAPIError
    from structlog.testing import capture_logs

    engine, sessions = database
    errors: list[str] = []

    async def handle(uow: UnitOfWork, msg: Message) -> None:
        try:  # PostgreSQL itself quotes the value in its message: invalid input syntax "..."
            await uow.session.execute(sa.text("SELECT CAST(CAST(:cnp AS text) AS bigint)"), {"cnp": MISTYPED_CNP})
        except DBAPIError as exc:
            errors.append(str(exc))
            raise

    with capture_logs() as logs:
        await consumer(sessions, handle).process([message("in", event(1, "c"), offset=1)])
    async with engine.connect() as conn:
        payload = (await conn.execute(sa.select(outbox_table.c.payload)
                                      .where(outbox_table.c.topic == DEAD_LETTER_TOPIC))).scalar_one()
    reason = json.loads(payload)["reason"]
    assert reason["code"] == "PROCESSING_FAILED" and "InvalidTextRepresentationError" in reason["message_en"]
    assert "22P02" in reason["message_en"], "the SQLSTATE says what kind of failure it was"
    assert MISTYPED_CNP not in json.dumps(reason)
    assert MISTYPED_CNP not in json.dumps(logs, default=str)
    assert "parameters hidden" in errors[0], "the engine hides SQL parameters from error texts"


async def test_a_batch_writes_its_events_with_one_insert(database):
    engine, sessions = database
    inserts: list[str] = []

    def note(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO PUNTE_OUTBOX"):
            inserts.append(statement)

    async def handle(uow: UnitOfWork, msg: Message) -> None:
        n = json.loads(msg.value)["n"]
        uow.outbox.emit("out", event(n, "c"))
        uow.outbox.emit("out", event(100 + n, "c"))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        await consumer(sessions, handle).process([message("in", event(n, "c"), offset=n) for n in range(5)])
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", note)
    async with engine.connect() as conn:
        payloads = (await conn.execute(sa.select(outbox_table.c.payload).order_by(outbox_table.c.id))).scalars()
        numbers = [json.loads(p)["n"] for p in payloads]
    assert numbers == [0, 100, 1, 101, 2, 102, 3, 103, 4, 104]
    assert len(inserts) == 1


async def test_the_trace_continues_from_the_inbound_message_through_the_outbox(database):
    from opentelemetry import trace

    from runtime.telemetry import configure_tracing
    configure_tracing("test")
    engine, sessions = database
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    async def handle(uow: UnitOfWork, msg: Message) -> None:
        assert trace.get_current_span().get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        uow.outbox.emit("out", event(1, "c"))

    inbound = message("in", event(1, "c"))
    inbound = Message(inbound.topic, 0, 0, None, inbound.value,
                      inbound.headers + (("traceparent", parent.encode()),), 0)
    await consumer(sessions, handle).process([inbound])
    async with engine.connect() as conn:
        headers = dict((await conn.execute(sa.select(outbox_table.c.headers)
                                           .where(outbox_table.c.topic == "out"))).scalar_one())
    trace_id = headers["traceparent"].split("-")[1]
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert headers["traceparent"] != parent, "a new span of the same trace"


async def test_a_failing_batch_handler_falls_back_to_one_message_at_a_time(database):
    engine, sessions = database
    applied: list[int] = []

    async def whole_batch(uow: UnitOfWork, msgs: list[Message]) -> None:
        uow.outbox.emit("out", event(-1, "c"))  # must not survive the failed batch
        raise ValueError("one message in here is bad")

    async def one(uow: UnitOfWork, msg: Message) -> None:
        n = json.loads(msg.value)["n"]
        if n == 2:
            raise ValueError("this one")
        applied.append(n)
        uow.outbox.emit("out", event(n, "c"))

    inbox = consumer(sessions, one, batch_handler=whole_batch)
    await inbox.process([message("in", event(n, "c"), offset=n) for n in range(4)])
    async with engine.connect() as conn:
        topics = [r.topic for r in (await conn.execute(sa.select(outbox_table.c.topic))).all()]
    assert applied == [0, 1, 3]
    assert topics.count("out") == 3 and topics.count(DEAD_LETTER_TOPIC) == 1


@pytest.mark.broker
async def test_replaying_the_outbox_republishes_every_event_in_order(infrastructure, database):
    """A lost broker is rebuilt from the outbox: published rows go out again, in order,
    and idempotent consumers take the second copies as duplicates."""
    from runtime.outbox import replay

    engine, sessions = database
    topic = f"test.replay.{uuid.uuid4().hex[:6]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])
    async with sessions() as session, session.begin():
        outbox = Outbox(session)
        for n in range(5):
            outbox.emit(topic, event(n, "case-r"), key="case-r")
        await outbox.flush()
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    try:
        relay = OutboxRelay(engine, producer)
        assert await relay.publish_batch() == 5
        assert await replay(engine) == 5
        assert await relay.publish_batch() == 5
    finally:
        await producer.stop()
    records = await read_topic(infrastructure.kafka_bootstrap, topic, 10)
    assert [json.loads(r.value)["n"] for r in records] == [0, 1, 2, 3, 4] * 2
    ids = [dict(r.headers)["ce_id"] for r in records]
    assert ids[:5] == ids[5:], "the same events, so consumers' inboxes drop the copies"


async def test_a_server_url_with_options_reaches_the_services_database_with_them(infrastructure):
    """A TLS option on the server URL (?ssl=...) is kept for the service's own database,
    through creation, migration and the engine."""
    server = infrastructure.database_url + ("&" if "?" in infrastructure.database_url else "?") + "ssl=disable"
    engine, sessions = await migrated_database(server, "runtime", MIGRATIONS)
    try:
        assert engine.url.query["ssl"] == "disable"
        async with sessions() as session:
            assert await session.scalar(sa.select(sa.func.count()).select_from(outbox_table)) == 0
    finally:
        await engine.dispose()
