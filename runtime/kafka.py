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


async def ensure_topics(bootstrap: str, topics: list[tuple[str, int]], replication: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, p, replication) for n, p in topics if n not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
