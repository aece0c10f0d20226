"""aiokafka clients configured once for the whole network."""
from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.group import LeaveGroupRequest

from contracts.reference import declared_configs, kept_briefly
from runtime.log import get_logger
from runtime.settings import Settings

log = get_logger("runtime.kafka")

SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
PROTOCOLS = ("PLAINTEXT", "SSL", *SASL_PROTOCOLS)
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class KafkaConfigError(ValueError):
    """The Kafka security settings contradict each other or miss a part: the process
    refuses to start rather than connect with less than was asked for."""


def client_options(settings: Settings | None = None) -> dict[str, Any]:
    """The security options of every aiokafka client, from the settings (default: the
    environment, PUNTE_KAFKA_*). Fails closed (KafkaConfigError)."""
    settings = settings or Settings()
    protocol = settings.kafka_security_protocol.upper()
    mechanism = settings.kafka_sasl_mechanism.upper() if settings.kafka_sasl_mechanism else None
    if protocol not in PROTOCOLS:
        raise KafkaConfigError(f"PUNTE_KAFKA_SECURITY_PROTOCOL={protocol!r}: one of {', '.join(PROTOCOLS)}")
    if mechanism is not None and mechanism not in MECHANISMS:
        raise KafkaConfigError(f"PUNTE_KAFKA_SASL_MECHANISM={mechanism!r}: one of {', '.join(MECHANISMS)}")
    if mechanism is not None and protocol not in SASL_PROTOCOLS:
        raise KafkaConfigError(f"PUNTE_KAFKA_SASL_MECHANISM={mechanism} needs PUNTE_KAFKA_SECURITY_PROTOCOL "
                               f"SASL_PLAINTEXT or SASL_SSL, not {protocol}: the credentials would not be used")
    if protocol in SASL_PROTOCOLS and mechanism is None:
        raise KafkaConfigError(f"PUNTE_KAFKA_SECURITY_PROTOCOL={protocol} needs PUNTE_KAFKA_SASL_MECHANISM")
    options: dict[str, Any] = {"security_protocol": protocol}
    if mechanism is not None:
        missing = [name for name, value in (("PUNTE_KAFKA_USERNAME", settings.kafka_username),
                                            ("PUNTE_KAFKA_PASSWORD", settings.kafka_password)) if not value]
        if missing:
            raise KafkaConfigError(f"PUNTE_KAFKA_SASL_MECHANISM={mechanism} is set but {' and '.join(missing)} "
                                   f"{'is' if len(missing) == 1 else 'are'} not: refusing to start")
        options |= {"sasl_mechanism": mechanism, "sasl_plain_username": settings.kafka_username,
                    "sasl_plain_password": settings.kafka_password}
    if protocol in ("SSL", "SASL_SSL"):
        ca = settings.kafka_ca_file
        if ca is not None and not ca.is_file():
            raise KafkaConfigError(f"PUNTE_KAFKA_CA_FILE={ca} is not a readable file")
        # Verifies the broker's certificate and host name (the default context does both).
        options["ssl_context"] = create_ssl_context(cafile=str(ca) if ca else None)
    return options


def make_admin(bootstrap: str, settings: Settings | None = None) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options(settings))


def make_producer(bootstrap: str, settings: Settings | None = None) -> AIOKafkaProducer:
    # acks=all: a send is acknowledged once every in-sync replica has it (with the topics'
    # min.insync.replicas 2 on Apache Kafka, a broker lost right after loses nothing). The
    # idempotent producer where the broker offers it (PUNTE_KAFKA_IDEMPOTENT_PRODUCER); no
    # transactions: the inbox makes redelivery harmless anyway.
    settings = settings or Settings()
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=2, request_timeout_ms=30000,
        max_batch_size=1 << 20, enable_idempotence=settings.kafka_idempotent_producer,
        **client_options(settings),
    )


class _Consumer(AIOKafkaConsumer):
    """aiokafka's consumer, which also leaves a group whose generation is 0.

    aiokafka sends LeaveGroup on stop only from generation 1, as Apache Kafka numbers them;
    Tansu numbers a group's first generation 0 (the protocol's "none" is -1). Without the
    leave, the member stays until its session expires (6 s), and a restarted consumer or the
    replica taking its partitions over waits for that (tests/integration/test_group_membership.py)."""

    async def start(self) -> None:
        await super().start()
        coordinator = getattr(self, "_coordinator", None)
        if isinstance(coordinator, GroupCoordinator):
            coordinator._maybe_leave_group = _leaving_from_generation_zero(coordinator)  # type: ignore[method-assign]


@asynccontextmanager
async def running(consumer: AIOKafkaConsumer) -> AsyncIterator[AIOKafkaConsumer]:
    """``consumer`` started, and stopped when the block ends, however it ends. aiokafka's
    start and stop, cancelled half-way, leave the fetcher and the group coordinator they
    made running with their connections: a ghost member that holds the group's next join
    until its session expires and reconnects to its broker for as long as the process lives.
    The inbox's restarts (hold, then go with a new broker epoch) cancel a client that may
    still be stopping, and a service may stop meanwhile; so the stop, once begun, finishes,
    and a cancellation that came during it is raised after it."""
    try:
        await consumer.start()
        yield consumer
    finally:
        stopping = asyncio.ensure_future(consumer.stop())
        interrupted: asyncio.CancelledError | None = None
        while not stopping.done():
            try:
                await asyncio.shield(stopping)
            except asyncio.CancelledError as cancel:
                interrupted = cancel
        stopping.result()
        if interrupted is not None:
            raise interrupted


def _leaving_from_generation_zero(coordinator: GroupCoordinator):
    leave_from_one = coordinator._maybe_leave_group

    async def maybe_leave_group() -> None:
        # aiokafka's own attempt, for generation 0: one try, its failure logged, never raised.
        if coordinator.generation == 0 and coordinator._group_instance_id is None:
            try:
                await coordinator._send_req(LeaveGroupRequest(coordinator.group_id, coordinator.member_id))
            except KafkaError as error:
                log.warning("leaving the consumer group failed", group=coordinator.group_id, error=str(error))
        await leave_from_one()
    return maybe_leave_group


# How long aiokafka's fetcher sleeps between walks when nothing wakes it (make_consumer).
FETCHER_IDLE_WAKE_MS = 1000
# How often a consumer asks for metadata unprompted; subscribed by pattern, for every topic
# (~310 on one county's network), which its process decodes in Python. The refresh only finds
# topics created while the consumer runs: the network's are created before its services start
# (broker_epoch.provision), a consumer held or rewound after a broker loss starts a new
# client, and aiokafka asks at once when a partition's leader moved. A topic created by hand
# meanwhile is read within this (5 s before issue #14's idle work).
METADATA_MAX_AGE_MS = 30_000


def make_consumer(bootstrap: str, group_id: str | None, max_records: int,
                  settings: Settings | None = None, fetch_max_wait_ms: int = 50,
                  fetch_min_bytes: int = 1) -> AIOKafkaConsumer:
    """A consumer as the services use it; ``group_id`` None reads without a group.
    ``fetch_max_wait_ms``: how long an idle partition holds a fetch (settings
    kafka_fetch_max_wait_ms and kafka_fetch_max_wait_background_ms); ``fetch_min_bytes``:
    how much must be new before the broker answers sooner (kafka_fetch_min_bytes_background)."""
    return _Consumer(
        **client_options(settings),
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=max_records,
        # Tansu answers a new member's JoinGroup after half its session timeout: 30 s kept
        # every consumer unassigned (the service not ready) for 15 s after start, 10 s (the
        # client's default) 5 s; 6 s, Apache Kafka's least (group.min.session.timeout.ms),
        # takes 3 s, at every start and every restart after a broker loss. Heartbeats run
        # beside the handlers, every 2 s, so only an event loop stalled for 6 s loses the
        # session, and the inbox makes the rebalance harmless.
        metadata_max_age_ms=METADATA_MAX_AGE_MS, session_timeout_ms=6000, heartbeat_interval_ms=2000,
        fetch_max_wait_ms=fetch_max_wait_ms, fetch_min_bytes=fetch_min_bytes,
        # aiokafka's fetcher walks every assigned partition each time it wakes: at each answer,
        # when records are taken, and every consumer_timeout_ms besides (200 ms by default).
        # On an idle consumer of 600 partitions those timed walks were half of its CPU
        # (issue #14, bench/README.md); answers and takes still wake it at once.
        consumer_timeout_ms=FETCHER_IDLE_WAKE_MS,
    )


DAY_MS = 24 * 3600 * 1000


def topic_configs(topics: list[tuple[str, int]], days: int) -> dict[str, dict[str, str]]:
    """Topic configuration at creation: what topics.yaml declares (``configs``: the maximum
    message size of what institutions send), and the topics of what institutions send
    (ingress, the HTTP gateway's) keep messages ``days`` days (retention.yaml
    ``ingress_days``), so a report in clear sent during the transition to sealed reports
    does not linger on the broker; the others keep the broker's defaults."""
    configs = {name: {**declared_configs(name),
                      **({"retention.ms": str(days * DAY_MS)} if kept_briefly(name) else {})}
               for name, _ in topics}
    return {name: config for name, config in configs.items() if config}


async def ensure_topics(bootstrap: str, topics: list[tuple[str, int]], replication: int | None = None,
                        configs: dict[str, dict[str, str]] | None = None, settings: Settings | None = None) -> None:
    """Create the topics that do not exist yet, with their ``configs`` (topic_configs) and
    ``replication`` (default: PUNTE_KAFKA_REPLICATION_FACTOR); an existing topic keeps the
    configuration it was created with. On Apache Kafka `punte kafka apply` creates the
    network's topics first, replicated (decision 0027); this finds none of them missing."""
    configs = configs or {}
    replication = replication or (settings or Settings()).kafka_replication_factor
    admin = make_admin(bootstrap, settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, p, replication, topic_configs=configs.get(n, {}))
                   for n, p in topics if n not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def broker_partitions(bootstrap: str, settings: Settings | None = None) -> dict[str, list[int]]:
    """Every topic the client may describe, with its partitions, from one metadata request
    for all topics. Not the consumer's topics() + partitions_for_topic(): those look in the
    consumer's own metadata, which Tansu fills with every topic but Apache Kafka, rightly,
    with none the consumer did not ask for (so every reader saw no partition on Kafka)."""
    admin = make_admin(bootstrap, settings)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described if t["error_code"] == 0}


async def partition_bounds(bootstrap: str, pattern: str, read_seconds: float = 10.0,
                           settings: Settings | None = None) -> dict[tuple[str, int], tuple[int, int]]:
    """(first offset still held, end offset) of every partition of the topics whose names
    match ``pattern`` (a regular expression, as a consumer's subscription): what a reader
    of those topics compares its own position with.

    The end offset is read, not only asked for: the embedded broker (Tansu 0.6) answers
    ListOffsets with the base offset of a partition's last record batch + 1, so a batch of
    twelve counts as one. Reading that last batch gives its true end; within
    ``read_seconds`` for every partition, else the answer stays a lower bound."""
    matcher = re.compile(pattern)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=50, **client_options(settings))
    async with running(consumer):
        partitions = [TopicPartition(topic, p) for topic, numbers in sorted(
                      (await broker_partitions(bootstrap, settings)).items())
                      if matcher.match(topic) for p in numbers]
        if not partitions:
            return {}
        # Assigned first, so the client asks the broker about these topics: without it
        # aiokafka's offset lookups on Apache Kafka waited about 30 s for metadata it never
        # requested (the audit's /verify timed out behind `punte status`).
        consumer.assign(partitions)
        first = await consumer.beginning_offsets(partitions)
        end = dict(await consumer.end_offsets(partitions))
        unread = {tp for tp in partitions if end[tp] > first[tp]}
        if unread:
            consumer.assign(list(unread))
            for tp in unread:
                consumer.seek(tp, end[tp] - 1)
            deadline = asyncio.get_running_loop().time() + read_seconds
            while unread and asyncio.get_running_loop().time() < deadline:
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    if records:
                        end[tp] = max(end[tp], records[-1].offset + 1)
                        unread.discard(tp)
        return {(tp.topic, tp.partition): (first[tp], end[tp]) for tp in partitions}
