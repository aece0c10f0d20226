"""Failure limits (issue #12, item 2), on the real broker and database: a consumer whose
handler fails for every message stops, its health goes red and nothing of what failed is
dead-lettered or answered; the operator resumes it after the fix and every message is
processed exactly once. A message that fails alone among good ones is still dead-lettered.
Dead letters are listed and replayed by the operator."""
from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import TopicPartition

from runtime.cloudevents import CloudEvent
from runtime.db import make_sessions
from runtime.inbox import DEAD_LETTER_TOPIC, Message, UnitOfWork, inbox_table
from runtime.kafka import ensure_topics, make_consumer, make_producer
from runtime.outbox import OutboxRelay, outbox_table
from runtime.service import Runtime, ServiceSpec, create_app
from runtime.settings import Settings
from runtime.signing import Keyring
from runtime.tokens import TokenVerifier
from tests.integration.helpers import (
    ISSUER,
    TEST_DATA_KEYS,
    TEST_DATA_KEYS_SETTING,
    bearer,
    eventually,
    migrated_database,
    scraped,
)

# Intake's migrations carry the runtime tables (inbox, outbox, data keys, dead-letter bodies).
MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "intake" / "migrations"
OPERATOR = bearer("", "operator.test", "operator")


@pytest.fixture
async def database(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "limits", MIGRATIONS)
    yield engine, sessions
    await engine.dispose()


def event(n: int) -> CloudEvent:
    return CloudEvent.new("ro.punte.test.v1", "/punte/test", {"n": n}, subject=f"case-{n}")


class Service:
    """A service process as the runtime builds it (its HTTP side over ASGI), with one
    consumer of a fresh topic, whose handler fails while ``broken`` (or for the numbers in
    ``poison``), and which tells the sender of every message it dead-letters."""

    def __init__(self, infrastructure, engine, topic: str, **settings) -> None:
        self.topic, self.bootstrap = topic, infrastructure.kafka_bootstrap
        self.group = f"t-limits-{uuid.uuid4().hex[:6]}"
        self.broken = False
        self.poison: set[int] = set()
        self.told: list[int] = []  # the PROCESSING_FAILED answers

        async def stats(session) -> dict:
            return {}
        spec = ServiceSpec(name="intake", migrations=MIGRATIONS, consumers=lambda rt: [], routers=[], stats=stats)
        self.settings = Settings(kafka_bootstrap=self.bootstrap, handler_attempts=1,
                                 data_keys=TEST_DATA_KEYS_SETTING, **settings)
        self.app = create_app(spec, self.settings)
        self.runtime = Runtime(
            name="intake", settings=self.settings, engine=engine, sessions=make_sessions(engine),
            producer=None, relay=OutboxRelay(engine, None),  # type: ignore[arg-type]
            verifier=TokenVerifier(ISSUER.issuer, ISSUER.audience, ISSUER.jwks()),
            network_key=None, keyring=Keyring([]), data_keys=TEST_DATA_KEYS, started=True)
        self.consumer = self.runtime.consumer(group_id=self.group, topics=[topic], handler=self.handle,
                                              on_failure=self.on_failure, verify_network=False)
        self.runtime.consumers = [self.consumer]
        self.app.state.runtime = self.runtime
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(self.app), base_url="http://intake.test")
        self.task: asyncio.Task | None = None

    async def handle(self, uow: UnitOfWork, message: Message) -> None:
        n = json.loads(message.value)["n"]
        if self.broken or n in self.poison:
            raise RuntimeError("relation \"reports\" does not exist (a bad deployment)")
        uow.outbox.emit("out", event(n))

    async def on_failure(self, uow: UnitOfWork, message: Message, code: str, detail: str) -> None:
        assert code == "PROCESSING_FAILED"
        self.told.append(json.loads(message.value)["n"])

    async def send(self, numbers: range) -> None:
        producer = make_producer(self.bootstrap)
        await producer.start()
        try:
            for n in numbers:
                sent = event(n)
                await producer.send_and_wait(self.topic, sent.body(), key=b"k", headers=sent.headers())
        finally:
            await producer.stop()

    def start(self) -> None:
        self.task = asyncio.create_task(self.consumer.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.http.aclose()

    async def committed(self) -> int:
        """The group's committed offset on the topic (0: nothing committed)."""
        reader = make_consumer(self.bootstrap, self.group, 10)
        await reader.start()
        try:
            return await reader.committed(TopicPartition(self.topic, 0)) or 0
        finally:
            await reader.stop()

    async def dead_letters(self) -> list[dict]:
        async with self.runtime.engine.connect() as conn:
            rows = (await conn.execute(sa.select(outbox_table.c.payload)
                                       .where(outbox_table.c.topic == DEAD_LETTER_TOPIC)
                                       .order_by(outbox_table.c.id))).scalars()
            return [json.loads(r) for r in rows]

    async def applied(self) -> list[int]:
        """The messages whose effects were committed, in the order they were: read from the
        outbox, not counted in memory, since a batch that failed was rolled back and applied
        again in halves (decision 0033)."""
        async with self.runtime.engine.connect() as conn:
            rows = (await conn.execute(sa.select(outbox_table.c.payload).where(outbox_table.c.topic == "out")
                                       .order_by(outbox_table.c.id))).scalars()
            return [json.loads(r)["n"] for r in rows]

    async def inbox_rows(self) -> int:
        async with self.runtime.engine.connect() as conn:
            return await conn.scalar(sa.select(sa.func.count()).select_from(inbox_table))


@pytest.fixture
async def service(infrastructure, database):
    engine, _ = database
    made: list[Service] = []

    async def make(**settings) -> Service:
        topic = f"test.limits.{uuid.uuid4().hex[:6]}"
        await ensure_topics(infrastructure.kafka_bootstrap, [(topic, 1)])
        made.append(Service(infrastructure, engine, topic, **settings))
        return made[-1]
    yield make
    for s in made:
        await s.stop()


@pytest.mark.broker
async def test_a_handler_failing_for_every_message_stops_the_consumer_until_the_operator_resumes_it(service):
    svc: Service = await service(consumer_max_consecutive_failures=3)
    svc.broken = True
    await svc.send(range(8))
    svc.start()

    async def stopped_or_done():
        """the consumer stopped, or (today) dead-lettered every message"""
        ready = await svc.http.get("/health/ready")
        return ready.status_code == 503 and ready.json().get("consumers_stopped") or len(svc.told) == 8
    await eventually(stopped_or_done)

    # Nothing of what failed was dead-lettered or answered, nor committed past.
    assert await svc.dead_letters() == [], "no dead letter: the consumer stopped instead"
    assert svc.told == [], "no sender is told PROCESSING_FAILED for a fault of ours"
    assert await svc.committed() == 0
    assert await svc.inbox_rows() == 0

    # Health red, saying which consumer stopped and why; /stats says so too, with the detail.
    ready = await svc.http.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["consumers_running"] is False
    [stopped] = ready.json()["consumers_stopped"]
    assert stopped["group"] == svc.group and stopped["limit"] == "consecutive-failures"
    assert "4 messages in a row" in stopped["reason"]
    assert stopped["position"] == f"{svc.topic}/0/0"
    stats = (await svc.http.get("/stats", headers=OPERATOR)).json()
    [consumer] = stats["consumers"]
    assert consumer["group"] == svc.group and consumer["stopped"]["limit"] == "consecutive-failures"
    assert "RuntimeError" in consumer["stopped"]["detail"] and consumer["stops"] == 1
    # The alert metric has risen (deploy/prometheus/alerts.yaml: PunteConsumerStopped).
    assert await scraped(svc.http, "punte_consumer_stopped", group=svc.group) == 1

    # Resuming is the operator's.
    group_path = f"/consumers/{svc.group}/resume"
    assert (await svc.http.post(group_path, headers=bearer("dgaspc-bc", "cm", "case-manager"))).status_code == 403
    assert (await svc.http.post("/consumers/no-such-group/resume", headers=OPERATOR)).status_code == 404

    # The fix is deployed; the operator resumes: every message is processed, exactly once.
    svc.broken = False
    resumed = await svc.http.post(group_path, headers=OPERATOR)
    assert resumed.status_code == 200 and resumed.json()["resumed"] is True

    async def all_processed():
        """the group committed past every message"""
        return await svc.committed() == 8
    await eventually(all_processed)
    assert sorted(await svc.applied()) == list(range(8))
    assert await svc.dead_letters() == [] and svc.told == []
    assert await svc.inbox_rows() == 8

    async def ready_again():
        """health is green again"""
        return (await svc.http.get("/health/ready")).status_code == 200
    await eventually(ready_again)
    assert await scraped(svc.http, "punte_consumer_stopped", group=svc.group) == 0
    assert await scraped(svc.http, "punte_consumer_processed_total", group=svc.group) == 8
    again = await svc.http.post(group_path, headers=OPERATOR)
    assert again.status_code == 200 and again.json()["resumed"] is False, "it was running"


@pytest.mark.broker
async def test_a_message_failing_alone_among_good_ones_is_dead_lettered_and_the_consumer_goes_on(service):
    svc: Service = await service(consumer_max_consecutive_failures=3, consumer_failure_hold_seconds=0.5)
    svc.poison = {2, 5}  # 5 is the last: nothing follows it, so it is judged once the hold ends
    await svc.send(range(6))
    svc.start()

    async def done():
        """every message applied or dead-lettered, and committed"""
        return await svc.committed() == 6
    await eventually(done)
    assert await svc.applied() == [0, 1, 3, 4]
    assert svc.told == [2, 5]
    assert [d["offset"] for d in await svc.dead_letters()] == [2, 5]
    assert (await svc.http.get("/health/ready")).json().get("consumers_stopped") in (None, [])


@pytest.mark.broker
async def test_failures_at_the_end_of_a_poll_wait_uncommitted_for_the_message_after_them(service):
    svc: Service = await service(consumer_max_consecutive_failures=3, consumer_failure_hold_seconds=600)
    svc.poison = {1, 2}
    await svc.send(range(3))
    svc.start()

    async def first_applied():
        """the good message before the failures applied and was committed"""
        return await svc.applied() == [0] and await svc.committed() == 1
    await eventually(first_applied)
    assert svc.told == [] and await svc.dead_letters() == [], "their verdict waits for what follows"

    await svc.send(range(3, 4))

    async def judged():
        """the message after them applied, so they failed alone"""
        return await svc.committed() == 4
    await eventually(judged)
    assert await svc.applied() == [0, 3] and svc.told == [1, 2]
    assert [d["offset"] for d in await svc.dead_letters()] == [1, 2]
    assert await svc.inbox_rows() == 4


@pytest.mark.broker
async def test_too_many_failures_in_a_minute_stop_the_consumer_even_between_good_messages(service):
    svc: Service = await service(consumer_max_consecutive_failures=3, consumer_max_failures_per_minute=3)
    svc.poison = {1, 3, 5, 7, 9}
    await svc.send(range(10))
    svc.start()

    async def stopped():
        """the consumer stopped"""
        answer = (await svc.http.get("/health/ready")).json()
        return answer.get("consumers_stopped")
    [why] = await eventually(stopped)
    assert why["limit"] == "failures-per-minute"
    assert len(await svc.dead_letters()) <= 3, "at most the minute's allowance was dead-lettered"
    assert await svc.committed() <= 7, "nothing committed past the failure that stopped it"


@pytest.mark.broker
async def test_dead_letters_are_listed_and_replayed_once_by_the_operator(service):
    svc: Service = await service()
    svc.poison = {1}
    batch = [Message(svc.topic, 0, n, b"k", event(n).body(), tuple(event(n).headers()), 0) for n in range(3)]
    await svc.consumer.process(batch)
    position = f"{svc.topic}/0/1"
    assert svc.told == [1]

    listed = await svc.http.get("/dead-letters", headers=OPERATOR)
    assert listed.status_code == 200
    [entry] = listed.json()
    assert entry["position"] == position and entry["reason_code"] == "PROCESSING_FAILED"
    assert entry["body_kept"] is True and entry["replayed_at"] is None
    assert entry["value_sha256"] == (await svc.dead_letters())[0]["value_sha256"]
    assert (await svc.http.get("/dead-letters", headers=bearer("dgaspc-bc", "cm", "case-manager"))).status_code == 403

    # Replaying before the fix fails and changes nothing.
    failed = await svc.http.post("/dead-letters/replay", json={"positions": [position]}, headers=OPERATOR)
    assert failed.status_code == 200 and failed.json()["results"][0]["result"] == "failed"
    svc.poison = set()
    replayed = await svc.http.post("/dead-letters/replay", json={"positions": [position, "elsewhere/0/9"]},
                                   headers=OPERATOR)
    assert [r["result"] for r in replayed.json()["results"]] == ["replayed", "not-found"]
    assert await svc.applied() == [0, 2, 1]
    again = await svc.http.post("/dead-letters/replay", json={"positions": None}, headers=OPERATOR)
    assert again.json()["results"] == [], "nothing is left to replay"
    twice = await svc.http.post("/dead-letters/replay", json={"positions": [position]}, headers=OPERATOR)
    assert twice.json()["results"][0]["result"] == "already-replayed"
    assert await svc.applied() == [0, 2, 1], "a replay applies once"
    [entry] = (await svc.http.get("/dead-letters", headers=OPERATOR)).json()
    assert entry["replayed_at"] is not None


@pytest.mark.broker
async def test_the_operator_does_it_all_from_the_command_line(service, tmp_path):
    """`punte consumers list|resume` and `punte deadletters list|replay` against a service
    served over HTTP, with a token of the embedded issuer's key from the state folder."""
    import socket

    import uvicorn
    from typer.testing import CliRunner

    from punte.cli import app as cli
    from punte.state import State
    from runtime.log import configure_logging
    from runtime.signing import SigningKey

    state = State(tmp_path / "state")
    state.keys.mkdir(parents=True)
    SigningKey.generate("idp-cli").save(state.keys / "identity.key")
    issuer = state.token_issuer("http://issuer.cli")
    svc: Service = await service(consumer_max_consecutive_failures=1)
    svc.runtime.verifier = TokenVerifier(issuer.issuer, issuer.audience, issuer.jwks())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configure_logging("intake")  # as runtime.service.serve does: log lines on stderr, not in the CLI's output
    server = uvicorn.Server(uvicorn.Config(svc.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    state.runtime_file.write_text(json.dumps({"services": {"intake": f"http://127.0.0.1:{port}",
                                                           "identity": "http://issuer.cli"}}))

    async def punte(*args: str) -> str:
        result = await asyncio.to_thread(CliRunner().invoke, cli, [*args, "--state-dir", str(state.root)])
        assert result.exit_code == 0, result.output
        return result.output
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        # A poison message among good ones: dead-lettered; then a bad deployment stops it.
        svc.poison = {1}
        await svc.send(range(3))
        svc.start()

        async def poison_judged():
            """the poison message was dead-lettered"""
            return await svc.committed() == 3
        await eventually(poison_judged)
        svc.broken = True
        await svc.send(range(3, 6))

        async def stopped():
            """the consumer stopped"""
            return svc.consumer.stopped
        await eventually(stopped)
        [listed] = json.loads(await punte("consumers", "list", "intake", "--json"))
        assert listed["group"] == svc.group and listed["stopped"]["limit"] == "consecutive-failures"
        await punte("consumers", "list", "intake")  # the table for people
        [dead] = json.loads(await punte("deadletters", "list", "intake", "--json"))
        assert dead["position"] == f"{svc.topic}/0/1" and dead["replayed_at"] is None
        await punte("deadletters", "list", "intake")

        svc.broken, svc.poison = False, set()
        assert "resumed" in await punte("consumers", "resume", "intake", svc.group)
        assert "replayed" in await punte("deadletters", "replay", "intake", "--id", f"{svc.topic}/0/1")

        async def all_done():
            """every message committed"""
            return await svc.committed() == 6
        await eventually(all_done)
        assert sorted(await svc.applied()) == list(range(6))
        rows = json.loads(await punte("deadletters", "list", "intake", "--json"))
        assert [r["replayed_at"] is not None for r in rows] == [True]
    finally:
        server.should_exit = True
        await serving


@pytest.mark.broker
async def test_an_erased_dead_letter_is_listed_as_such_and_cannot_be_replayed(service, tmp_path):
    from runtime.retention import purge
    from tests.integration.helpers import zero_day_schedule

    svc: Service = await service()
    svc.poison = {0}
    await svc.consumer.process([Message(svc.topic, 0, 0, b"k", event(0).body(), tuple(event(0).headers()), 0)])
    async with svc.runtime.sessions() as session, session.begin():
        await purge(session, TEST_DATA_KEYS, zero_day_schedule(tmp_path), datetime.now(timezone.utc) + timedelta(seconds=1))
    [entry] = (await svc.http.get("/dead-letters", headers=OPERATOR)).json()
    assert entry["position"] == f"{svc.topic}/0/0" and entry["body_kept"] is False
    assert entry["erased_rule"] == "dead-letter-body" and entry["value_sha256"] is None
    svc.poison = set()
    replayed = await svc.http.post("/dead-letters/replay", json={"positions": [entry["position"]]}, headers=OPERATOR)
    assert replayed.json()["results"][0]["result"] == "erased" and await svc.applied() == []
