"""Fixtures for the real infrastructure: PostgreSQL and a Kafka-protocol broker over TCP.

By default both come from the embedded wheels (no Docker needed). PUNTE_TEST_BACKEND=
containers uses testcontainers (Apache Kafka and PostgreSQL in Docker) where an engine
exists; PUNTE_TEST_DATABASE_URL and PUNTE_TEST_KAFKA_BOOTSTRAP point at servers you run."""
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

from punte.embedded import EmbeddedBroker, EmbeddedPostgres
from runtime import broker_epoch

# Locally, property tests explore new inputs on every run; CI replays a fixed sequence so
# a submission lands or fails on its own merits (a local find becomes a regression test).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


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


def _containers() -> Iterator[Infrastructure]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:17", driver="asyncpg") as pg, KafkaContainer() as kafka:
        asyncio.run(broker_epoch.claim(kafka.get_bootstrap_server()))
        yield Infrastructure(pg.get_connection_url(), kafka.get_bootstrap_server())


@pytest.fixture(scope="session")
def infrastructure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infrastructure]:
    database, bootstrap = os.environ.get("PUNTE_TEST_DATABASE_URL"), os.environ.get("PUNTE_TEST_KAFKA_BOOTSTRAP")
    if os.environ.get("PUNTE_TEST_BACKEND") == "containers":
        yield from _containers()
        return
    root: Path = tmp_path_factory.mktemp("infrastructure")
    postgres = broker = None
    try:
        if database is None:
            postgres = EmbeddedPostgres(root / "postgres").start()
            database = postgres.url
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
