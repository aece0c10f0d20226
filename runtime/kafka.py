"""aiokafka clients configured once for the whole network."""
from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    # acks=all; no idempotent producer or transactions: the embedded broker lacks them,
    # and the inbox makes redelivery harmless anyway.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=2, request_timeout_ms=30000,
        max_batch_size=1 << 20,
    )


def make_consumer(bootstrap: str, group_id: str | None, max_records: int) -> AIOKafkaConsumer:
    """A consumer as the services use it; ``group_id`` None reads without a group."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=max_records,
        # Tansu answers a new member's JoinGroup after half its session timeout: 30 s kept
        # every consumer unassigned (the service not ready) for 15 s after start; 10 s, the
        # client's default, takes 5 s. Heartbeats run beside the handlers, so only a stalled
        # event loop loses the session, and the inbox makes the rebalance harmless.
        metadata_max_age_ms=5000, session_timeout_ms=10000, heartbeat_interval_ms=3000,
        # An idle partition answers a fetch after this long; the default 500 ms adds up
        # over the several hops from a report to an inbox.
        fetch_max_wait_ms=50,
    )


DAY_MS = 24 * 3600 * 1000
INGRESS_PREFIX = "punte.ingress."


def topic_configs(topics: list[tuple[str, int]], days: int) -> dict[str, dict[str, str]]:
    """Topic configuration at creation: ingress topics keep messages ``days`` days
    (retention.yaml ``ingress_days``), so a report in clear sent during the transition to
    sealed reports does not linger on the broker; the others keep the broker's default."""
    return {name: {"retention.ms": str(days * DAY_MS)} for name, _ in topics if name.startswith(INGRESS_PREFIX)}


async def ensure_topics(bootstrap: str, topics: list[tuple[str, int]], replication: int = 1,
                        configs: dict[str, dict[str, str]] | None = None) -> None:
    """Create the topics that do not exist yet, with their ``configs`` (topic_configs); an
    existing topic keeps the configuration it was created with."""
    configs = configs or {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
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
