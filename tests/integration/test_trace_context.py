"""The trace context crosses the outbox and the batch handlers (decision 0036): an event a
batch handler writes goes on in the trace of the message that caused it, and the relay
sends each row with one traceparent, in the trace of the work that wrote it. On the real
PostgreSQL and broker; nothing exported (the instrumentations are off, as in a service
without a collector: the runtime carries the context itself)."""
from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from opentelemetry import trace

from runtime.cloudevents import CloudEvent
from runtime.inbox import InboxConsumer, Message, UnitOfWork
from runtime.kafka import ensure_topics, make_producer
from runtime.outbox import Outbox, OutboxRelay, outbox_table
from runtime.telemetry import configure_tracing, tracer
from tests.integration.helpers import migrated_database, read_topic

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "intake" / "migrations"


@pytest.fixture
async def database(infrastructure):
    configure_tracing("test")  # once per process; whichever test or service came first
    engine, sessions = await migrated_database(infrastructure.database_url, "traces", MIGRATIONS)
    yield engine, sessions
    await engine.dispose()


def _traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def _trace_of(headers) -> list[str]:
    return [(v.decode() if isinstance(v, bytes) else v).split("-")[1] for k, v in headers if k == "traceparent"]


async def test_a_batch_handlers_events_go_on_in_their_own_messages_traces(database):
    engine, sessions = database
    traces = {case: _traceparent() for case in ("case-a", "case-b", "case-c")}
    batch = [Message("in", 0, offset, case.encode(), CloudEvent.new("ro.punte.test.v1", "/punte/test", {}).body(),
                     (("ce_id", f"e{offset}".encode()), ("traceparent", parent.encode())), 0)
             for offset, (case, (_, parent)) in enumerate(traces.items())]

    async def handle_many(uow: UnitOfWork, messages: list[Message]) -> None:
        for m in messages:  # one event per message, keyed by its case, as referral does
            uow.outbox.emit("out", CloudEvent.new("ro.punte.test.v1", "/punte/test", {"case": m.key.decode()}),
                            key=m.key.decode())

    async def handle(uow: UnitOfWork, m: Message) -> None:
        await handle_many(uow, [m])

    inbox = InboxConsumer(service="referral", group_id="unused", bootstrap="unused", sessions=sessions,
                          handler=handle, batch_handler=handle_many)
    await inbox.process(batch)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox_table.c.payload, outbox_table.c.headers)
                                   .where(outbox_table.c.topic == "out"))).all()
    found = {json.loads(r.payload)["case"]: _trace_of(r.headers) for r in rows}
    assert found == {case: [trace_id] for case, (trace_id, _) in traces.items()}


async def relay_once(infrastructure, engine) -> int:
    """One pass of a relay with a producer of its own: the rows it published or parked."""
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    try:
        return await OutboxRelay(engine, producer).publish_batch()
    finally:
        await producer.stop()


@pytest.mark.broker
async def test_the_relay_sends_each_row_once_traced_in_the_trace_that_wrote_it(infrastructure, database):
    engine, sessions = database
    topic = f"test.traces.{uuid.uuid4().hex[:6]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])
    with tracer("test").start_as_current_span("POST /v1/events") as request:
        async with sessions() as session, session.begin():
            outbox = Outbox(session)
            outbox.emit(topic, CloudEvent.new("ro.punte.test.v1", "/punte/test", {}), key="case-a")
            await outbox.flush()
    written = request.get_span_context()
    assert await relay_once(infrastructure, engine) == 1
    [record] = await read_topic(infrastructure.kafka_bootstrap, topic, 1)
    parents = [v.decode() for k, v in record.headers if k == "traceparent"]
    assert len(parents) == 1, "one traceparent per record"
    _, trace_id, span_id, _ = parents[0].split("-")
    assert trace_id == format(written.trace_id, "032x"), "the trace of the request that wrote the row"
    assert span_id != format(written.span_id, "016x"), "the relay's own span, a child of it"
    assert trace.get_current_span() is trace.INVALID_SPAN


@pytest.mark.broker
async def test_a_row_whose_headers_hold_any_text_is_sent_as_it_is(infrastructure, database):
    """An event's attributes may hold any text (a subject in Romanian, a fuzzer's code
    points); the relay reads only the trace headers for its span, so the row goes out and
    the relay goes on. (Before, every header was encoded as Latin-1 to find the trace, and one
    such row stopped the relay for good.)"""
    engine, sessions = database
    topic = f"test.traces.{uuid.uuid4().hex[:6]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])
    subject = "caz Ștefan \U0010fa06<7\U000c4297"
    async with sessions() as session, session.begin():
        outbox = Outbox(session)
        outbox.emit(topic, CloudEvent.new("ro.punte.test.v1", "/punte/test", {}, subject=subject), key="case-a")
        outbox.emit(topic, CloudEvent.new("ro.punte.test.v1", "/punte/test", {}), key="case-a")
        await outbox.flush()
    assert await relay_once(infrastructure, engine) == 2
    first, _ = await read_topic(infrastructure.kafka_bootstrap, topic, 2)
    assert dict(first.headers)["ce_subject"].decode() == subject
