"""What the benchmarks share about the stack they run on: starting it on Tansu or on an
Apache Kafka cluster of its own, the institutions' producers, and a line saying what the
figures were measured on."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from punte.apache_kafka import SCRAM, KafkaCluster, kafka_version
from punte.stack import Stack
from runtime.kafka import make_producer
from runtime.settings import Settings


@contextmanager
def started_stack(root: Path, broker: str = "tansu", services: bool = True, replicas: int = 1,
                  timeout: float = 300) -> Iterator[Stack]:
    """A stack in ``root`` (supervised), stopped on leaving, whatever happened. On Apache
    Kafka (``broker`` "kafka") with a three-node cluster of its own, given to the stack so
    that its supervisor leaves the nodes to the caller (bench/chaos.py kills them).
    ``services`` False: PostgreSQL and the broker only, with the network's topics."""
    cluster = KafkaCluster(root / "kafka") if broker == "kafka" else None
    stack = Stack(root, broker_kind=broker, kafka=cluster, replicas=replicas)
    try:
        if cluster is not None:
            cluster.start()
        if services:
            stack.start(timeout=timeout)
        else:
            stack.start_infrastructure()
        yield stack
    finally:
        stack.stop()
        if cluster is not None:
            cluster.stop()


def stack_settings(stack: Stack) -> Settings | None:
    """The bench's own clients' settings: every right on the stack's broker."""
    return stack.admin_settings()


def kafka_settings(stack: Stack, user: str) -> Settings:
    """A client's settings as ``user`` (an institution) with its password from the stack's
    `punte kafka apply`, as PUNTE_KAFKA_* would give them to that institution's system."""
    return Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=SCRAM, kafka_username=user,
                    kafka_password=stack.kafka_credentials[user], kafka_idempotent_producer=True)


class Senders:
    """The institutions' systems. On Apache Kafka one producer per institution, connected as
    its own principal, so that its ACLs (write its own ingress topic, nothing else) hold for
    every message: a message on another's ingress topic can only be written there by that
    other institution. On Tansu, which has no principals, one producer for all."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.producers: dict[str | None, Any] = {}

    async def start(self, topics: set[str]) -> None:
        bootstrap = self.stack.kafka_bootstrap or ""
        if self.stack.kafka is None:
            self.producers[None] = make_producer(bootstrap)
        else:
            for owner in sorted(t.removeprefix("punte.ingress.") for t in topics):
                self.producers[owner] = make_producer(bootstrap, kafka_settings(self.stack, owner))
        await asyncio.gather(*(p.start() for p in self.producers.values()))
        # Each topic's metadata (its partitions' leaders) before anything is timed.
        await asyncio.gather(*(self.for_topic(t).partitions_for(t) for t in topics))

    def for_topic(self, topic: str) -> Any:
        return self.producers.get(None) or self.producers[topic.removeprefix("punte.ingress.")]

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.producers.values()), return_exceptions=True)


def setup(stack: Stack) -> str:
    """What a run is on, for a benchmark's ``machine`` line."""
    common = "PostgreSQL synchronous_commit=on, fsync=off; load generator and every process on the same machine"
    if stack.kafka is None:
        return f"embedded default (Tansu, memory storage; {common})"
    return (f"Apache Kafka {kafka_version()}, {len(stack.kafka.nodes)} KRaft nodes (broker+controller) on "
            f"loopback, SASL/SCRAM-SHA-512, ACLs, RF 3, min.insync.replicas 2, acks=all, idempotent producers; "
            f"each institution its own principal; {common}")
