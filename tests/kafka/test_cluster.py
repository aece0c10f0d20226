"""The Apache Kafka fixture itself: three brokers that answer only authenticated clients,
and a node killed with SIGKILL comes back on its ports and data."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiokafka.errors import KafkaError
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from punte.apache_kafka import KafkaCluster
from runtime.kafka import make_producer
from runtime.settings import Settings

pytestmark = pytest.mark.kafka


def _brokers(config: dict[str, str]) -> set[int]:
    admin = AdminClient({**config, "log_level": 0})
    return {node.id for node in admin.describe_cluster(request_timeout=10).result(timeout=20).nodes}


def _brokers_when_answered(config: dict[str, str]) -> set[int]:
    """The brokers listed, or none while the request lands on the killed node."""
    try:
        return _brokers({**config, "socket.timeout.ms": "5000"})
    except KafkaException:
        return set()


def test_every_broker_answers_the_admin(kafka_cluster: KafkaCluster):
    for node in kafka_cluster.nodes:
        assert _brokers({**kafka_cluster.admin_config(), "bootstrap.servers": node.address}) == {1, 2, 3}


async def test_a_wrong_password_or_no_sasl_is_refused(kafka_cluster: KafkaCluster,
                                                     caplog: pytest.LogCaptureFixture):
    wrong = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                     kafka_username=kafka_cluster.admin_user, kafka_password="not-the-password")
    producer = make_producer(kafka_cluster.bootstrap, wrong)
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()
    assert "SaslAuthenticationFailed" in caplog.text and "invalid credentials" in caplog.text
    plaintext = make_producer(kafka_cluster.bootstrap, Settings(
        kafka_security_protocol="PLAINTEXT", kafka_sasl_mechanism=None, kafka_username=None, kafka_password=None))
    plaintext.client._request_timeout_ms = 3000
    with pytest.raises(KafkaError):
        await asyncio.wait_for(plaintext.start(), 20)
    await plaintext.stop()


def test_a_killed_node_leaves_two_that_serve_and_comes_back(kafka_cluster: KafkaCluster):
    admin = AdminClient({**kafka_cluster.admin_config(), "log_level": 0})
    admin.create_topics([NewTopic("fixture.kill", 1, 3, config={"min.insync.replicas": "2"})])["fixture.kill"].result()
    kafka_cluster.kill(3)
    assert kafka_cluster.node(3).process.returncode == -9  # SIGKILL
    survivors = ",".join(n.address for n in kafka_cluster.nodes if n.node_id != 3)
    deadline = time.monotonic() + 60  # the controllers fence it when its session lapses
    while _brokers_when_answered({**kafka_cluster.admin_config(), "bootstrap.servers": survivors}) != {1, 2}:
        assert time.monotonic() < deadline, "node 3 still listed a minute after SIGKILL"
        time.sleep(0.5)
    # Two of three replicas in sync: min.insync.replicas 2 still takes acks=all writes.
    producer = Producer({**kafka_cluster.admin_config(), "bootstrap.servers": survivors, "acks": "all",
                         "log_level": 0})
    delivered: list[object] = []
    producer.produce("fixture.kill", b"while node 3 is down", on_delivery=lambda err, _: delivered.append(err))
    assert producer.flush(30) == 0 and delivered == [None]
    kafka_cluster.restart(3)
    assert _brokers(kafka_cluster.admin_config()) == {1, 2, 3}


def test_a_node_that_cannot_bind_its_port_fails_the_start_at_once_with_its_log(tmp_path):
    """A port chosen free and taken by another listener before the node binds it: the node
    exits, yet the port answers (the other listener). The start must say which node exited
    and why, not wait out its timeout asking the healthy nodes for three brokers."""
    cluster = KafkaCluster(tmp_path / "kafka")
    taken = cluster.node(3)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", taken.port))
        squatter.listen()
        with pytest.raises(RuntimeError) as failure:
            cluster.start(timeout=60)
    assert "Kafka node 3 exited" in str(failure.value)
    assert "Address already in use" in str(failure.value)  # from node 3's log, in the error
    assert all(node.process is None for node in cluster.nodes)  # nothing left running
