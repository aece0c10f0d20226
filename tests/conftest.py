"""Fixtures for the real infrastructure: PostgreSQL and a Kafka-protocol broker over TCP.

By default both come from the embedded wheels (no Docker needed). ``--broker kafka`` runs the
tests that touch a broker (marked ``broker``) on a three-node Apache Kafka cluster with the
network's ACLs instead, and the Apache Kafka tests (marked ``kafka``) with them: one test
shape, two brokers; `make test` runs both (decision 0027). PUNTE_TEST_BACKEND=containers
uses testcontainers (Apache Kafka and PostgreSQL in Docker) where an engine exists;
PUNTE_TEST_DATABASE_URL and PUNTE_TEST_KAFKA_BOOTSTRAP point at servers you run."""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

from punte.apache_kafka import KafkaCluster
from punte.embedded import EmbeddedBroker, EmbeddedPostgres
from runtime import broker_epoch
from tests.brokers import KAFKA, TANSU, Network, apply_network, start_cluster

# Locally, property tests explore new inputs on every run; CI replays a fixed sequence so
# a submission lands or fails on its own merits (a local find becomes a regression test).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--broker", choices=(TANSU, KAFKA), default=TANSU,
                     help="the broker of the tests that touch one: the embedded Tansu (default, every "
                          "test) or a three-node Apache Kafka cluster with ACLs (only the tests marked "
                          "broker, and the Apache Kafka tests marked kafka)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On Apache Kafka only the tests that touch the broker run (the others ran on Tansu);
    the Apache Kafka tests need the cluster, so on Tansu they say how to run them."""
    if config.getoption("--broker") == KAFKA:
        kept = [item for item in items if item.get_closest_marker("broker") or item.get_closest_marker("kafka")]
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
        return
    on_kafka_only = pytest.mark.skip(reason="an Apache Kafka test: run with --broker kafka")
    for item in items:
        if item.get_closest_marker("kafka"):
            item.add_marker(on_kafka_only)


def pytest_configure(config: pytest.Config) -> None:
    """Each session gets a temporary root of its own. Every pytest session that starts
    resets the shared /tmp/pytest-of-<user> to mode 0700, and an embedded PostgreSQL run by
    root runs as an unprivileged user (punte.embedded) that can then no longer reach its
    data folder under it: it panics ("pg_control: Permission denied") and every later test
    fails. A second session on the same machine did exactly that to a full run."""
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="punte-tests-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_BASETEMP, None)
    if own is not None and not os.environ.get("PUNTE_KEEP_TEST_TMP"):
        shutil.rmtree(own, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[str]()


@dataclass(frozen=True)
class Infrastructure:
    database_url: str  # server URL (database "postgres"); tests create their own databases
    kafka_bootstrap: str
    kafka: Network | None = None  # on Apache Kafka: the cluster and every principal's password


def _containers() -> Iterator[Infrastructure]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:17", driver="asyncpg") as pg, KafkaContainer() as kafka:
        asyncio.run(broker_epoch.claim(kafka.get_bootstrap_server()))
        yield Infrastructure(pg.get_connection_url(), kafka.get_bootstrap_server())


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three Apache Kafka nodes, started once for the session by the first test that asks."""
    yield from start_cluster(tmp_path_factory.mktemp("apache-kafka"))


@pytest.fixture(scope="session")
def kafka_network(kafka_cluster: KafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Network:
    """The cluster with the whole network's declaration applied (`punte kafka apply`)."""
    return apply_network(kafka_cluster, tmp_path_factory.mktemp("kafka-apply"))


@pytest.fixture(scope="session")
def infrastructure(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Infrastructure]:
    database, bootstrap = os.environ.get("PUNTE_TEST_DATABASE_URL"), os.environ.get("PUNTE_TEST_KAFKA_BOOTSTRAP")
    if os.environ.get("PUNTE_TEST_BACKEND") == "containers":
        yield from _containers()
        return
    root: Path = tmp_path_factory.mktemp("infrastructure")
    on_kafka = request.config.getoption("--broker") == KAFKA
    postgres = broker = None
    try:
        if database is None:
            postgres = EmbeddedPostgres(root / "postgres").start()
            database = postgres.url
        if on_kafka:
            yield from _on_apache_kafka(database, request.getfixturevalue("kafka_network"))
            return
        if bootstrap is None:
            broker = EmbeddedBroker(log_file=root / "broker.log").start()
            bootstrap = broker.bootstrap
        # A provisioned broker has an epoch (decision 0026): services started on it read and publish.
        asyncio.run(broker_epoch.claim(bootstrap))
        yield Infrastructure(database, bootstrap)
    finally:
        if broker:
            broker.stop()
        if postgres:
            postgres.stop()


def _on_apache_kafka(database: str, network: Network) -> Iterator[Infrastructure]:
    """The tests act as the cluster's admin, as an operator's tooling would: every client
    they build without settings of its own reads PUNTE_KAFKA_* from the environment. The
    services the end-to-end tests start connect as their own principals (punte.stack), and
    tests/kafka/test_acls.py proves what each principal may not do."""
    with pytest.MonkeyPatch.context() as environment:
        for name, value in network.env(network.cluster.admin_user).items():
            environment.setenv(name, value)
        asyncio.run(broker_epoch.provision(network.cluster.bootstrap, settings=network.cluster.admin_settings()))
        yield Infrastructure(database, network.cluster.bootstrap, network)
