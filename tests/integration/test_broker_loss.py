"""Broker loss and rebuild (issue #12 item 4, decision 0026), on a broker of this test's own
(never the session's): a real intake service (its app's lifespan: relay, consumers, the
epoch watch) loses its broker to SIGKILL, a new empty one starts on the same port, and once
it is provisioned (topics and a new epoch) the service notices by itself: topics as planned,
its outcomes republished, its consumers reading the new log from the beginning, and the
reports institutions resend answered exactly once."""
from __future__ import annotations

import asyncio
import importlib
import random
import uuid
from collections import defaultdict
from contextlib import asynccontextmanager

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy.ext.asyncio import create_async_engine

from contracts.events import EventType
from contracts.reference import delivery_topic, ingress_topic
from punte.embedded import EmbeddedBroker
from punte.institution import InstitutionSystem
from punte.state import State
from punte.synthetic import reporters, synthetic_report
from runtime import broker_epoch
from runtime.cloudevents import CloudEvent, decode
from runtime.kafka import make_producer
from runtime.service import create_app
from runtime.settings import Settings
from tests.integration.helpers import ISSUER, eventually
from tests.integration.test_topic_retention import retention_ms

OPERATOR = {"Authorization": f"Bearer {ISSUER.issue('op.network', None, ['operator'])}"}


class Deliveries:
    """What one institution reads on its delivery topic of one broker, from the beginning."""

    def __init__(self, bootstrap: str, institution: str) -> None:
        self.events: list[CloudEvent] = []
        self._consumer = AIOKafkaConsumer(delivery_topic(institution), bootstrap_servers=bootstrap, group_id=None,
                                          auto_offset_reset="earliest", metadata_max_age_ms=1000)
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "Deliveries":
        await self._consumer.start()

        async def run() -> None:
            async for record in self._consumer:
                self.events.append(decode(record.headers, record.value))
        self._task = asyncio.create_task(run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    def outcomes(self) -> dict[str, set[str]]:
        """Report id -> the ids of the outcomes it got (an institution drops a repeated id)."""
        found: dict[str, set[str]] = defaultdict(set)
        for event in self.events:
            if event.type == EventType.OUTCOME.value:
                found[event.data["subject_id"]].add(event.id)
        return found


@pytest.fixture
def state(tmp_path) -> State:
    return State(tmp_path / "state").prepare()


@asynccontextmanager
async def intake(infrastructure, state: State, bootstrap: str, prefix: str):
    """Intake as `python -m services.intake` runs it (its lifespan: migrations, relay,
    consumers, the broker-epoch watch), on its own database, its HTTP side over ASGI."""
    secrets = state.secrets()
    settings = Settings(service="intake", kafka_bootstrap=bootstrap, database_url=infrastructure.database_url,
                        database_prefix=prefix, state_dir=state.root, pseudonym_key=secrets["pseudonym_key"],
                        identity_keys=secrets["identity_keys"], data_keys=secrets["data_keys"]["intake"],
                        oidc_issuer=ISSUER.issuer, broker_epoch_check_seconds=0.5)
    app = create_app(importlib.import_module("services.intake.bootstrap").SPEC, settings)
    async with app.router.lifespan_context(app):
        app.state.runtime.verifier = ISSUER_VERIFIER
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://intake.test") as http:
            yield http


def _verifier():
    from runtime.tokens import TokenVerifier
    return TokenVerifier(ISSUER.issuer, ISSUER.audience, ISSUER.jwks())


ISSUER_VERIFIER = _verifier()


async def ready(http: httpx.AsyncClient) -> dict:
    return (await http.get("/health/ready")).json()


async def send(bootstrap: str, state: State, reports: list[tuple[str, CloudEvent]]) -> None:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        for institution, event in reports:
            await InstitutionSystem(institution, state.institution_key(institution), producer).send(event)
    finally:
        await producer.stop()


async def topic_shape(bootstrap: str, topics: list[str]) -> dict[str, tuple[int, str | None]]:
    """Each topic's partitions and retention.ms, as the broker describes them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics)}
    finally:
        await admin.close()
    return {t: (partitions[t], await retention_ms(bootstrap, t)) for t in topics}


async def test_a_broker_that_comes_back_empty_is_rebuilt_and_every_report_is_answered_once(infrastructure, state,
                                                                                          tmp_path):
    broker = EmbeddedBroker(log_file=tmp_path / "broker.log").start()
    bootstrap = broker.bootstrap
    prefix = f"loss{uuid.uuid4().hex[:6]}"
    rng = random.Random(26)
    reporter = reporters()[0]
    try:
        first_epoch = await broker_epoch.provision(bootstrap)
        async with intake(infrastructure, state, bootstrap, prefix) as http:
            await eventually(lambda: _ready(http), 60)
            system = InstitutionSystem(reporter, state.institution_key(reporter), None,  # type: ignore[arg-type]
                                       intake_keys=(await http.get("/.well-known/jwks.json")).json())
            answered = [system.report(synthetic_report(rng, reporter)) for _ in range(4)]
            await send(bootstrap, state, [(reporter, e) for e in answered])
            async with Deliveries(bootstrap, reporter) as before:
                async def all_answered() -> bool:
                    """the first reports are answered"""
                    return all(before.outcomes().get(e.id) for e in answered)
                await eventually(all_answered)
                first_outcomes = {e.id: before.outcomes()[e.id] for e in answered}

            # The broker dies with its log; a new, empty one starts on the same port.
            broker.kill()
            broker.start()

            async def says_empty() -> bool:
                """readiness says the broker is empty, machine-readably"""
                answer = await ready(http)
                return (answer["broker"] or {}).get("reason") == broker_epoch.BROKER_EMPTY and answer["status"] == "not-ready"
            await eventually(says_empty)
            stats = (await http.get("/stats", headers=OPERATOR)).json()
            assert stats["broker"]["state"] == "missing"

            second_epoch = await broker_epoch.provision(bootstrap)
            assert second_epoch.id != first_epoch.id

            async def rebuilt() -> bool:
                """the service noticed the new epoch and is ready again"""
                answer = await ready(http)
                return answer["status"] == "ready" and answer["broker"]["epoch"] == second_epoch.id
            await eventually(rebuilt)

            plan, configs = broker_epoch.network_topics()
            wanted = [ingress_topic(reporter), delivery_topic(reporter), "punte.cases", broker_epoch.TOPIC]
            shape = await topic_shape(bootstrap, wanted)
            partitions = dict(plan)
            for topic in wanted[:-1]:
                assert shape[topic][0] == partitions[topic], topic
            assert shape[ingress_topic(reporter)][1] == configs[ingress_topic(reporter)]["retention.ms"]
            assert shape[broker_epoch.TOPIC] == (1, "-1")

            # The institution resends what it sent (same ids) and sends new reports: the new
            # log starts at offset 0, below where the consumer had read the old one.
            new = [system.report(synthetic_report(rng, reporter)) for _ in range(4)]
            await send(bootstrap, state, [(reporter, e) for e in answered + new])
            async with Deliveries(bootstrap, reporter) as after:
                async def all_answered_again() -> bool:
                    """every report, old and new, has its outcome on the new broker"""
                    return all(after.outcomes().get(e.id) for e in answered + new)
                await eventually(all_answered_again)
                await asyncio.sleep(2)  # anything doubled would have come by now
                outcomes = after.outcomes()
            assert {e.id: outcomes[e.id] for e in answered} == first_outcomes, \
                "the answers given before the loss are republished, the same answers"
            assert all(len(outcomes[e.id]) == 1 for e in new), "each new report answered once"

            # Asked again by hand (punte replay), nothing more happens: the epoch is the same.
            again = (await http.post("/broker/epoch", headers=OPERATOR)).json()
            assert again["seen"] == "same" and again["changes"] == 1

        # Intake is down when the next loss comes; a report sent meanwhile never reached it.
        unconsumed = system.report(synthetic_report(rng, reporter))
        await send(bootstrap, state, [(reporter, unconsumed)])
        broker.kill()
        broker.start()
        third_epoch = await broker_epoch.provision(bootstrap)
        async with intake(infrastructure, state, bootstrap, prefix) as http:
            await eventually(lambda: _ready(http), 60)
            assert (await ready(http))["broker"]["epoch"] == third_epoch.id
            await send(bootstrap, state, [(reporter, unconsumed), (reporter, answered[0])])
            async with Deliveries(bootstrap, reporter) as last:
                async def resent_answered() -> bool:
                    """the report intake never consumed is answered once resent"""
                    return bool(last.outcomes().get(unconsumed.id)) and bool(last.outcomes().get(new[-1].id))
                await eventually(resent_answered)
                await asyncio.sleep(2)
                outcomes = last.outcomes()
            assert len(outcomes[unconsumed.id]) == 1
            assert outcomes[answered[0].id] == first_outcomes[answered[0].id]
    finally:
        broker.stop()


async def _ready(http: httpx.AsyncClient) -> bool:
    """the service is ready"""
    return (await http.get("/health/ready")).status_code == 200


async def commit_offsets(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` (no member of it running), as a consumer of the old
    log would have committed them into the new broker before its service saw the new epoch."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp: await consumer.committed(tp) for tp in partitions}
    finally:
        await consumer.stop()


async def test_a_service_that_crashed_before_its_consumers_rewound_reads_the_new_log_from_its_beginning(
        infrastructure, state, tmp_path):
    """The crash window of decision 0026: intake recorded a new epoch, its consumers had
    committed old-log offsets into the new broker, and it crashed before they committed
    anything of the new log. Started again, it reads the new log from its beginning."""
    broker = EmbeddedBroker(log_file=tmp_path / "broker.log").start()
    bootstrap = broker.bootstrap
    prefix = f"crash{uuid.uuid4().hex[:6]}"
    rng = random.Random(2026)
    reporter, quiet = reporters()[0], reporters()[1]
    try:
        await broker_epoch.provision(bootstrap)
        async with intake(infrastructure, state, bootstrap, prefix) as http:
            await eventually(lambda: _ready(http), 60)
            intake_keys = (await http.get("/.well-known/jwks.json")).json()
        system = InstitutionSystem(reporter, state.institution_key(reporter), None,  # type: ignore[arg-type]
                                   intake_keys=intake_keys)

        broker.kill()
        broker.start()
        second_epoch = await broker_epoch.provision(bootstrap)
        # What the crashed process left: the new epoch recorded (the rewind not finished),
        # and the group's offsets of the old log, far past the new log's records.
        database = Settings(service="intake", database_url=infrastructure.database_url,
                            database_prefix=prefix).database_for("intake")
        engine = create_async_engine(database)
        try:
            async with engine.begin() as conn:
                await conn.execute(broker_epoch.epochs_table.insert().values(
                    epoch_id=second_epoch.id, ordinal=2, seen_at=sa.func.now()))
        finally:
            await engine.dispose()
        busy, idle = TopicPartition(ingress_topic(reporter), 0), TopicPartition(ingress_topic(quiet), 0)
        await commit_offsets(bootstrap, "punte-intake", {busy: 1000, idle: 1000})
        reports = [system.report(synthetic_report(rng, reporter)) for _ in range(3)]
        await send(bootstrap, state, [(reporter, e) for e in reports])

        async with intake(infrastructure, state, bootstrap, prefix) as http:
            await eventually(lambda: _ready(http), 60)
            async with Deliveries(bootstrap, reporter) as after:
                async def answered() -> bool:
                    """the reports below the stale offset are read and answered"""
                    return all(after.outcomes().get(e.id) for e in reports)
                await eventually(answered)

            async def rewound() -> bool:
                """the service says its consumers finished the rewind"""
                return (await ready(http))["broker"].get("rewound") is True
            await eventually(rewound)
            committed = await committed_offsets(bootstrap, "punte-intake", [busy, idle])
            assert committed[busy] == 3, "past the new log's records"
            assert committed[idle] is not None and committed[idle] < 1000, \
                "a partition that got no message keeps no stale offset"
    finally:
        broker.stop()
