"""No head-of-line blocking (issue #12, item 7): a row the relay cannot publish for a reason
retrying will not fix is parked with its reason, the rows of other keys go on, the rows of
its key wait behind it; readiness, /stats and the operator see it and decide. And /stats
counts dead letters from what is persisted, every path, across restarts."""
from __future__ import annotations

import importlib
import json
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from runtime.cloudevents import CloudEvent
from runtime.db import make_sessions
from runtime.inbox import InboxConsumer, Message, UnitOfWork
from runtime.kafka import client_options, ensure_topics, make_producer
from runtime.outbox import Outbox, OutboxRelay, outbox_table, retry_all_parked
from runtime.service import Runtime, create_app
from runtime.settings import Settings
from runtime.signing import Keyring
from runtime.tokens import TokenVerifier
from tests.integration.helpers import (
    ISSUER,
    TEST_DATA_KEYS,
    TEST_DATA_KEYS_SETTING,
    bearer,
    intake_consumer,
    message,
    migrated_database,
    read_topic,
    scraped,
)

# Intake's migrations carry the runtime tables; its own tables are unused here.
MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "intake" / "migrations"
OPERATOR = {"Authorization": f"Bearer {ISSUER.issue('op.network', None, ['operator'])}"}
# Larger than the producer's maximum request size (1 MiB): the broker never takes it.
OVERSIZED = 1_200_000


@pytest.fixture
async def database(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "parking", MIGRATIONS)
    yield engine, sessions
    await engine.dispose()


@pytest.fixture
async def producer(infrastructure):
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    yield producer
    await producer.stop()


def event(n: int, padding: int = 0) -> CloudEvent:
    return CloudEvent.new("ro.punte.test.v1", "/punte/test", {"n": n, "padding": "x" * padding})


async def write(sessions, *rows: tuple[str, CloudEvent, str | None]) -> None:
    async with sessions() as session, session.begin():
        outbox = Outbox(session)
        for topic, ev, key in rows:
            outbox.emit(topic, ev, key=key)
        await outbox.flush()


async def relay_rounds(relay: OutboxRelay, rounds: int = 4) -> None:
    """What OutboxRelay.run does a few times: publish a batch, a failure is retried later."""
    for _ in range(rounds):
        try:
            await relay.publish_batch()
        except Exception:  # noqa: BLE001 - run() logs and retries; so does this
            pass


def numbers(records) -> list[int]:
    return [json.loads(r.value)["n"] for r in records]


async def new_topic(infrastructure, partitions: int = 1) -> str:
    topic = f"test.parking.{uuid.uuid4().hex[:6]}"
    await ensure_topics(infrastructure.kafka_bootstrap, [(topic, partitions)])
    return topic


async def unpublished(engine) -> list[int]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox_table.c.id).where(outbox_table.c.published_at.is_(None))
                                   .order_by(outbox_table.c.id))).scalars()
        return list(rows)


@pytest.mark.broker
async def test_an_oversized_row_is_parked_and_the_rows_of_other_keys_go_on(infrastructure, database, producer):
    engine, sessions = database
    topic = await new_topic(infrastructure)
    await write(sessions, (topic, event(1, OVERSIZED), "case-a"), (topic, event(2), "case-b"),
                (topic, event(3), "case-a"), (topic, event(4), "case-c"))
    relay = OutboxRelay(engine, producer)
    await relay_rounds(relay)

    records = await read_topic(infrastructure.kafka_bootstrap, topic, 2, timeout=10)
    assert numbers(records) == [2, 4], "other keys go on; case-a's next row waits behind the parked one"
    [parked] = await relay_parked(engine)
    assert parked["key"] == "case-a" and parked["topic"] == topic
    assert "MessageSizeTooLarge" in parked["reason"] and parked["waiting"] == 1
    assert len(await unpublished(engine)) == 2, "neither the parked row nor the one behind it is lost"


async def relay_parked(engine) -> list[dict]:
    from runtime.outbox import parked_rows
    async with engine.connect() as conn:
        return [row.as_dict() for row in await parked_rows(conn)]


@pytest.mark.broker
async def test_a_row_for_a_topic_that_does_not_exist_is_parked_and_the_others_go_on(infrastructure, database):
    engine, sessions = database
    topic = await new_topic(infrastructure)
    # Apache Kafka creates no topic on first use: a legal name it does not hold is unknown, and
    # the client gives up after request_timeout_ms of metadata (30 s in production, runtime.kafka;
    # shorter here). The embedded broker creates any legal name, so there the name is one no
    # broker accepts, which the relay parks before sending.
    on_kafka = infrastructure.kafka is not None
    suffix = uuid.uuid4().hex[:6]
    missing = f"test.parking.never.created.{suffix}" if on_kafka else f"test parking never created {suffix}!"
    await write(sessions, (missing, event(1), "case-a"), (topic, event(2), "case-b"))
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, request_timeout_ms=3000,
                                **client_options())
    await producer.start()
    try:
        await relay_rounds(OutboxRelay(engine, producer), rounds=2)
    finally:
        await producer.stop()

    assert numbers(await read_topic(infrastructure.kafka_bootstrap, topic, 1, timeout=10)) == [2]
    [parked] = await relay_parked(engine)
    assert parked["topic"] == missing and ("UnknownTopic" if on_kafka else "InvalidTopic") in parked["reason"]
    # Once the cause is fixed (here: never), every parked row goes back in line at once.
    assert await retry_all_parked(engine) == 1 and await relay_parked(engine) == []


@pytest.mark.broker
async def test_the_operator_retries_or_discards_a_parked_row_and_its_key_goes_on(infrastructure, database,
                                                                                 producer):
    engine, sessions = database
    topic = await new_topic(infrastructure)
    await write(sessions, (topic, event(1, OVERSIZED), "case-a"), (topic, event(2), "case-a"),
                (topic, event(3, OVERSIZED), "case-b"), (topic, event(4), "case-b"))
    relay = OutboxRelay(engine, producer)
    await relay_rounds(relay)
    assert await read_topic(infrastructure.kafka_bootstrap, topic, 1, timeout=3) == []
    app, client = service_app(engine, relay)
    async with client:
        listed = (await client.get("/outbox/parked", headers=OPERATOR)).json()
        assert [(p["key"], p["waiting"]) for p in listed] == [("case-a", 1), ("case-b", 1)]
        first, second = (p["id"] for p in listed)

        # Retried, it is still too large: parked again, nothing lost, nothing behind it sent.
        assert (await client.post(f"/outbox/parked/{first}/retry", headers=OPERATOR)).status_code == 200
        await relay_rounds(relay)
        assert [p["id"] for p in (await client.get("/outbox/parked", headers=OPERATOR)).json()] == [first, second]

        # Discarded: the row stays, marked discarded, never published; its key goes on.
        answer = await client.post(f"/outbox/parked/{second}/discard", headers=OPERATOR)
        assert answer.status_code == 200 and answer.json()["discarded"] == second
        await relay_rounds(relay)
        assert numbers(await read_topic(infrastructure.kafka_bootstrap, topic, 1, timeout=10)) == [4]
        assert [p["id"] for p in (await client.get("/outbox/parked", headers=OPERATOR)).json()] == [first]
        gone = await client.post("/outbox/parked/999999/discard", headers=OPERATOR)
        assert gone.status_code == 409 and gone.json()["detail"]["code"] == "NOT_PARKED"
        again = await client.post(f"/outbox/parked/{second}/retry", headers=OPERATOR)
        assert again.status_code == 409, "a discarded row is not put back by a retry"
        # Not the operator: refused.
        someone = bearer("dgaspc-bc", "cm.dgaspc-bc", "case-manager")
        assert (await client.get("/outbox/parked", headers=someone)).status_code == 403
    async with engine.connect() as conn:
        discarded = (await conn.execute(sa.select(outbox_table.c.id).where(outbox_table.c.id == second)
                                        .where(sa.column("discarded_at").is_not(None)))).scalars().all()
    assert discarded == [second], "a discarded row is kept, marked"


@pytest.mark.broker
async def test_readiness_status_and_stats_show_parked_rows(infrastructure, database, producer):
    engine, sessions = database
    topic = await new_topic(infrastructure)
    await write(sessions, (topic, event(1, OVERSIZED), "case-a"), (topic, event(2), "case-a"))
    relay = OutboxRelay(engine, producer)
    app, client = service_app(engine, relay)
    async with client:
        healthy = (await client.get("/health/ready")).json()
        assert healthy["status"] == "ready"
        await relay_rounds(relay)
        ready = await client.get("/health/ready")
        stats = (await client.get("/stats", headers=OPERATOR)).json()
        # The alert metric (deploy/prometheus/alerts.yaml: PunteOutboxParked).
        parked = await scraped(client, "punte_outbox_rows", state="parked")
        waiting = await scraped(client, "punte_outbox_rows", state="waiting_behind_parked")
    # Still serving (the other keys flow), but not silent about it.
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["outbox_unblocked"] is False
    assert "1 outbox row parked" in " ".join(ready.json()["problems"])
    assert stats["outbox"]["parked"] == 1 and stats["outbox"]["waiting_behind_parked"] == 1
    assert (parked, waiting) == (1, 1)


async def test_stats_count_every_dead_letter_from_the_database_across_a_restart(infrastructure):
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, Keyring([]))
    try:
        # One refused at the ingress (nobody's signature), one failing in a handler.
        unsigned = message("punte.ingress.isj-bc", CloudEvent.new(
            "ro.punte.report.submitted.v2", "/institutions/isj-bc", {"n": 1}), offset=1)
        await consumer.process([unsigned])

        async def failing(uow: UnitOfWork, msg: Message) -> None:
            raise ValueError("cannot apply")
        other = InboxConsumer(service="intake", group_id="t2", bootstrap="t", sessions=make_sessions(engine),
                              handler=failing, attempts=1, data_keys=TEST_DATA_KEYS)
        await other.process([message("in", event(5), offset=2)])

        # The service restarts: a new process, its counters at zero.
        _, client = service_app(engine, OutboxRelay(engine, None))  # type: ignore[arg-type]
        async with client:
            stats = (await client.get("/stats", headers=OPERATOR)).json()
            by_reason = {code: await scraped(client, "punte_dead_letters", reason=code)
                         for code in ("PROCESSING_FAILED", "MISSING_SIGNATURE")}
        assert by_reason == {"PROCESSING_FAILED": 1, "MISSING_SIGNATURE": 1}
        assert stats["dead_letters"]["total"] == 2
        assert stats["dead_letters"]["by_reason"]["PROCESSING_FAILED"] == 1
        assert sum(stats["dead_letters"]["by_reason"].values()) == 2
        assert stats["dead_letters"]["bodies_kept"] == 2
    finally:
        await engine.dispose()


def service_app(engine, relay: OutboxRelay) -> tuple[object, httpx.AsyncClient]:
    """Intake's app as ``python -m services.intake`` builds it, on a test database, trusting
    the test issuer's tokens, with ``relay``."""
    settings = Settings(service="intake", data_keys=TEST_DATA_KEYS_SETTING)
    app = create_app(importlib.import_module("services.intake.bootstrap").SPEC, settings)
    app.state.runtime = Runtime(
        name="intake", settings=settings, engine=engine, sessions=make_sessions(engine), producer=None,  # type: ignore[arg-type]
        relay=relay, verifier=TokenVerifier(ISSUER.issuer, ISSUER.audience, ISSUER.jwks()),
        network_key=None, keyring=Keyring([]), started=True)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return app, httpx.AsyncClient(transport=transport, base_url="http://intake.test")


class BrokerAwayOnce:
    """The real producer, but the first send finds the broker away (a transient failure)."""

    def __init__(self, producer) -> None:
        self._producer, self._failed = producer, False

    def __getattr__(self, name: str):
        return getattr(self._producer, name)

    async def send(self, *args, **kwargs):
        if not self._failed:
            self._failed = True
            raise KafkaConnectionError("broker away (test)")
        return await self._producer.send(*args, **kwargs)


@pytest.mark.broker
async def test_a_transient_failure_parks_nothing_and_the_batch_goes_again(infrastructure, database, producer):
    engine, sessions = database
    topic = await new_topic(infrastructure)
    await write(sessions, (topic, event(1), "case-a"), (topic, event(2), "case-b"))
    relay = OutboxRelay(engine, BrokerAwayOnce(producer))  # type: ignore[arg-type]
    with pytest.raises(KafkaConnectionError):
        await relay.publish_batch()
    assert await relay_parked(engine) == [] and len(await unpublished(engine)) == 2
    await relay_rounds(relay)
    assert numbers(await read_topic(infrastructure.kafka_bootstrap, topic, 2, timeout=10)) == [1, 2]
    assert await unpublished(engine) == []
