"""`punte up --broker kafka` (issue #13): the network on Apache Kafka, each service
connecting as its own principal with only its ACLs, and an institution as its own: a
sealed, signed report sent to its ingress topic gets its outcome on its delivery topic."""
from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from contracts.events import EventType
from contracts.reference import delivery_topic, ingress_topic
from punte.cli import demo_client_settings
from punte.demo import run_demo
from punte.institution import InstitutionSystem, fetch_intake_keys
from punte.stack import SERVICES, Stack
from punte.status import collect
from punte.synthetic import synthetic_report
from runtime.cloudevents import decode
from runtime.kafka import make_consumer, make_producer
from tests.brokers import Network
from tests.e2e.browser import send_report

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

# Not one of test_acls.py's institutions: their delivery topics hold that module's bare
# test records on the shared cluster.
REPORTER = "spas-onesti"


@pytest.fixture(scope="module")
def kafka_stack(kafka_network: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("kafka-stack")
    _forget_the_services_groups(kafka_network)
    stack = Stack(root / "state", broker_kind="kafka", kafka=kafka_network.cluster,
                  kafka_credentials_file=kafka_network.credentials_file)
    try:
        stack.start(timeout=300)
        yield stack
    finally:
        stack.stop()


def _forget_the_services_groups(network: Network) -> None:
    """A network with fresh databases, as on a fresh cluster: the end-to-end network that ran
    on this cluster before left the services' groups' offsets, from which new services with
    empty inboxes would go on (an audit trail starting half-way through the log)."""
    admin = AdminClient({**network.cluster.admin_config(), "log_level": 0})
    groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=30).valid
              if g.group_id.startswith("punte-")]
    for future in (admin.delete_consumer_groups(groups).values() if groups else ()):
        future.result(timeout=30)


def test_each_service_connects_as_its_own_principal(kafka_stack: Stack):
    for service in SERVICES:
        env = kafka_stack._env(service)
        assert env["PUNTE_KAFKA_USERNAME"] == f"punte-{service}"
        assert env["PUNTE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["PUNTE_KAFKA_IDEMPOTENT_PRODUCER"] == "true"
    assert "PUNTE_KAFKA_USERNAME" not in kafka_stack._env("identity")


async def test_an_institutions_report_gets_its_outcome_on_apache_kafka(kafka_stack: Stack, kafka_network: Network):
    bootstrap = kafka_stack.kafka_bootstrap or ""
    reader = make_consumer(bootstrap, f"{REPORTER}.outcomes", 100, kafka_network.settings(REPORTER))
    reader.subscribe([delivery_topic(REPORTER)])
    await reader.start()
    producer = make_producer(bootstrap, kafka_network.settings(REPORTER))
    await producer.start()
    try:
        system = InstitutionSystem(REPORTER, kafka_stack.state.institution_key(REPORTER), producer,
                                   intake_keys=await asyncio.to_thread(fetch_intake_keys, kafka_stack.url("intake")))
        event = system.report(synthetic_report(random.Random(13), REPORTER))
        await system.send(event)
        outcome = None
        deadline = asyncio.get_running_loop().time() + 120
        while outcome is None and asyncio.get_running_loop().time() < deadline:
            for batch in (await reader.getmany(timeout_ms=500)).values():
                for record in batch:
                    delivered = decode(record.headers, record.value)
                    if delivered.type == EventType.OUTCOME.value and delivered.data["subject_id"] == event.id:
                        outcome = delivered.data
        assert outcome is not None, "no outcome within 2 minutes"
        assert outcome["status"] == "accepted", outcome
        # aiokafka does not raise on a refused subscription, it logs it: no service lacks a grant.
        for service in SERVICES:
            log = (kafka_stack.state_dir / "logs" / f"{service}.log").read_text()
            assert "not authorized" not in log and "AuthorizationFailed" not in log, service
    finally:
        await producer.stop()
        await reader.stop()


def test_an_institution_without_kafka_reports_over_http_on_apache_kafka(kafka_stack: Stack):
    """Intake's HTTP gateway (decision 0009) puts what it takes on the gateway topic, which
    only intake may write: on Apache Kafka no service may write an institution's ingress
    topic, so a gateway that did got every report refused by the broker (a 500)."""
    answer = send_report(kafka_stack, "isj-bc", ["school_absenteeism"], role="school-counsellor", channel="school")
    assert answer["status"] == "accepted" and answer["case_id"], answer


async def test_the_demo_runs_on_apache_kafka(kafka_stack: Stack):
    """`punte up --broker kafka --demo`: the simulated institutions, which the demo plays all
    at once as the cluster's admin, get their reports answered."""
    progress = await run_demo(kafka_stack.kafka_bootstrap or "", kafka_stack.state, kafka_stack.url("intake"),
                              rate=10, limit=10, seed=5, client_settings=demo_client_settings(kafka_stack))
    assert progress.reports_sent == 10
    assert progress.accepted + progress.rejected >= 5, progress


async def test_punte_status_reads_the_topics_on_apache_kafka(kafka_stack: Stack):
    report = await collect(kafka_stack.state)
    assert report["components"]["broker"]["status"] == "up", report["components"]["broker"]


async def test_a_broker_killed_mid_run_loses_no_report(kafka_stack: Stack, kafka_network: Network):
    """RF 3, min.insync.replicas 2, acks=all and the idempotent producer: the node leading
    the reporter's ingress topic is killed with SIGKILL while it sends, and every report
    still gets exactly one outcome, and the audit trail verifies."""
    reporter, count = "spas-buhusi", 24
    cluster, bootstrap = kafka_network.cluster, kafka_stack.kafka_bootstrap or ""
    admin = AdminClient({**cluster.admin_config(), "log_level": 0})
    leader = admin.list_topics(ingress_topic(reporter), timeout=30).topics[ingress_topic(reporter)].partitions[0].leader
    reader = make_consumer(bootstrap, f"{reporter}.kill", 500, kafka_network.settings(reporter))
    reader.subscribe([delivery_topic(reporter)])
    await reader.start()
    producer = make_producer(bootstrap, kafka_network.settings(reporter))
    await producer.start()
    outcomes: dict[str, set[tuple[str, str]]] = {}
    try:
        system = InstitutionSystem(reporter, kafka_stack.state.institution_key(reporter), producer,
                                   intake_keys=await asyncio.to_thread(fetch_intake_keys, kafka_stack.url("intake")))
        rng, sent = random.Random(12), []
        for i in range(count):
            event = system.report(synthetic_report(rng, reporter))
            await system.send(event)
            sent.append(event.id)
            if i == count // 3:
                cluster.kill(leader)
        # Outcomes are read while the node comes back: the two others serve meanwhile.
        restarting = asyncio.create_task(asyncio.to_thread(cluster.restart, leader))
        deadline = asyncio.get_running_loop().time() + 180
        while len(outcomes) < count and asyncio.get_running_loop().time() < deadline:
            for batch in (await reader.getmany(timeout_ms=500)).values():
                for record in batch:
                    delivered = decode(record.headers, record.value)
                    # Only this run's: the end-to-end flows on the same cluster may have used
                    # this reporter too.
                    if delivered.type == EventType.OUTCOME.value and delivered.data["subject_id"] in sent:
                        outcomes.setdefault(delivered.data["subject_id"], set()).add(
                            (delivered.id, delivered.data["status"]))
        await restarting
    finally:
        await producer.stop()
        await reader.stop()
        if cluster.node(leader).process is None or cluster.node(leader).process.poll() is not None:
            cluster.restart(leader)
    assert sorted(outcomes) == sorted(sent), f"{count - len(outcomes)} reports without an outcome"
    # One outcome each: a record delivered twice carries the same outcome id (decision 0023).
    assert all(len(found) == 1 for found in outcomes.values()), {k: v for k, v in outcomes.items() if len(v) > 1}
    # The trail reads with the background fetch wait and catches up after the cluster's own
    # recovery; at the end of a full Kafka session on two loaded cores 120 s was once short.
    deadline = asyncio.get_running_loop().time() + 240
    while True:
        report = await collect(kafka_stack.state)
        if report["audit_state"] == "verified" and report["consistent"]["audit_covers_every_message"]:
            break
        assert asyncio.get_running_loop().time() < deadline, {k: report[k] for k in ("audit", "consistent")}
        await asyncio.sleep(2)
