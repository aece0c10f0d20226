"""The brokers the tests run on (``--broker``): the embedded Tansu, or a three-node Apache
Kafka cluster (KRaft, SASL/SCRAM, the StandardAuthorizer) with the whole network's
declaration applied by the operator's own command (`punte kafka apply`)."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from punte.apache_kafka import KafkaCluster, available
from punte.cli import app
from runtime.settings import Settings

TANSU, KAFKA = "tansu", "kafka"


@dataclass(frozen=True)
class Network:
    """The cluster after `punte kafka apply`, and every principal's password."""

    cluster: KafkaCluster
    credentials_file: Path
    passwords: dict[str, str]

    def settings(self, user: str) -> Settings:
        """A process's settings as `PUNTE_KAFKA_*` would give them for ``user``."""
        return Settings(**{name.removeprefix("PUNTE_").lower(): value for name, value in self.env(user).items()})

    def env(self, user: str) -> dict[str, str]:
        """`PUNTE_KAFKA_*` of a process connecting as ``user`` (the admin: the tests' own)."""
        password = self.cluster.admin_password if user == self.cluster.admin_user else self.passwords[user]
        return {"PUNTE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "PUNTE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "PUNTE_KAFKA_USERNAME": user, "PUNTE_KAFKA_PASSWORD": password,
                "PUNTE_KAFKA_IDEMPOTENT_PRODUCER": "true", "PUNTE_KAFKA_REPLICATION_FACTOR": "3"}


def start_cluster(folder: Path) -> Iterator[KafkaCluster]:
    """The cluster, skipped where Java or the fetched jars are missing (`make install`
    fetches them), except under CI, where a missing Kafka fails the tests that need it."""
    reason = available()
    if reason is not None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"Apache Kafka: {reason}")
    started = time.monotonic()
    try:
        cluster = KafkaCluster(folder).start()
    except (RuntimeError, TimeoutError) as failure:
        # Once more on fresh ports and storage: the cluster's ports are chosen free before
        # the JVMs bind them, and another process may take one meanwhile. The first failure
        # is printed (with each node's warnings), so that a cluster that never starts shows why.
        print(f"\nApache Kafka did not start, once more on fresh ports: {failure}")
        cluster = KafkaCluster(folder / "second-start").start()
    print(f"\nApache Kafka: three nodes ready in {time.monotonic() - started:.1f} s ({cluster.bootstrap})")
    try:
        yield cluster
    finally:
        cluster.stop()


def apply_network(cluster: KafkaCluster, folder: Path) -> Network:
    """The whole network's declaration applied with the operator's command, once."""
    credentials = folder / "kafka-credentials.json"
    started = time.monotonic()
    result = CliRunner().invoke(app, ["kafka", "apply", "--bootstrap", cluster.bootstrap,
                                      "--admin-user", cluster.admin_user, "--credentials", str(credentials)],
                                env={"PUNTE_KAFKA_ADMIN_PASSWORD": cluster.admin_password})
    assert result.exit_code == 0, result.output
    assert "users created: 151" in result.output
    print(f"\npunte kafka apply: {time.monotonic() - started:.1f} s")
    return Network(cluster, credentials, json.loads(credentials.read_text()))
