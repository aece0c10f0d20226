"""A three-node Apache Kafka cluster (KRaft, SASL/SCRAM, StandardAuthorizer), started once
for the session by the first test that asks for it; the tests skip where Java or the
fetched jars are missing (`make install` fetches them)."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from punte.apache_kafka import KafkaCluster, available


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    reason = available()
    if reason is not None:
        pytest.skip(f"Apache Kafka: {reason}")
    cluster = KafkaCluster(tmp_path_factory.mktemp("apache-kafka"))
    started = time.monotonic()
    cluster.start()
    print(f"\nApache Kafka: three nodes ready in {time.monotonic() - started:.1f} s ({cluster.bootstrap})")
    try:
        yield cluster
    finally:
        cluster.stop()
