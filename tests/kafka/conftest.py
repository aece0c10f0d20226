"""A three-node Apache Kafka cluster (KRaft, SASL/SCRAM, StandardAuthorizer), started once
for the session by the first test that asks for it; the tests skip where Java or the
fetched jars are missing (`make install` fetches them)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from punte.apache_kafka import KafkaCluster, available
from punte.cli import app
from runtime.settings import Settings


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


@dataclass(frozen=True)
class Network:
    """The cluster after `punte kafka apply`, and every principal's password."""

    cluster: KafkaCluster
    credentials_file: Path
    passwords: dict[str, str]

    def settings(self, user: str) -> Settings:
        """A process's settings as `PUNTE_KAFKA_*` would give them for ``user``."""
        return Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                        kafka_username=user, kafka_password=self.passwords[user], kafka_idempotent_producer=True)


@pytest.fixture(scope="session")
def kafka_network(kafka_cluster: KafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Network:
    """The whole network's declaration applied with the operator's command, once."""
    credentials = tmp_path_factory.mktemp("kafka-apply") / "kafka-credentials.json"
    started = time.monotonic()
    result = CliRunner().invoke(app, ["kafka", "apply", "--bootstrap", kafka_cluster.bootstrap,
                                      "--admin-user", kafka_cluster.admin_user, "--credentials", str(credentials)],
                                env={"PUNTE_KAFKA_ADMIN_PASSWORD": kafka_cluster.admin_password})
    assert result.exit_code == 0, result.output
    assert "users created: 151" in result.output
    print(f"\npunte kafka apply: {time.monotonic() - started:.1f} s")
    return Network(kafka_cluster, credentials, json.loads(credentials.read_text()))
