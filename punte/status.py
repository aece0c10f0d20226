"""`punte status`: health of every component and the counts that show nothing was lost."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.reference import BROKER_EPOCH_TOPIC, institutions, topic_names
from punte.stack import SERVICES, SUPERVISION_FILE
from punte.state import State
from runtime import broker_epoch
from runtime.kafka import broker_partitions, client_options
from runtime.settings import Settings


async def topic_messages(bootstrap: str, quiet_polls: int = 3, max_seconds: float = 15.0,
                         first_fetch_grace: float = 5.0, settings: Settings | None = None) -> int:
    """How many messages the network's topics hold (those of contracts/topics.yaml for every
    institution, and the broker's epoch), counted by reading them. Not every punte.* topic:
    one made by hand on the broker is not the network's, and on Apache Kafka the audit is
    granted none (it could never cover it).

    Not from ListOffsets: the embedded broker (Tansu 0.6) reports a stale latest offset
    after multi-record batches, so end offsets undercount; reading is exact at demo scale."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_bytes=16 << 20, **client_options(settings))
    network = set(topic_names(institutions())) | {BROKER_EPOCH_TOPIC}
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p) for topic, numbers in (await broker_partitions(bootstrap, settings)).items()
            if topic in network for p in numbers
        ]
        if not partitions:
            return 0
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        total, empty = 0, 0
        started = time.monotonic()
        deadline = started + max_seconds
        # On a live network new messages keep coming: stop when nothing more arrives, or at
        # the deadline (then the count is a lower bound, which is all "covers" needs). The
        # fetch high-water marks are not used: the embedded broker's can be stale too.
        # The first fetches over ~300 partitions take a second or two to bring anything:
        # empty polls count as quiet only after something arrived or after a grace period.
        while empty < quiet_polls and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10000)
            read = sum(len(records) for records in batch.values())
            total += read
            if read:
                empty = 0
            elif total or time.monotonic() - started > first_fetch_grace:
                empty += 1
        return total
    finally:
        await consumer.stop()


def operator_token(state: State, issuer: str, role: str = "operator", ttl_seconds: int = 300) -> str:
    """A short-lived token for ``role``, signed with the embedded issuer's key (the
    operator's machine holds the state folder)."""
    return state.token_issuer(issuer).issue(role, None, [role], ttl_seconds=ttl_seconds)


async def _check(client: httpx.AsyncClient, name: str, url: str,
                 operator: dict[str, str]) -> tuple[dict[str, Any], dict | None]:
    """A component's health, and a service's /stats (the operator's to read)."""
    try:
        if name not in SERVICES:
            health = await client.get(url + "/health/live")
            return {"status": "up" if health.status_code == 200 else "degraded", "url": url}, None
        health, stats = await asyncio.gather(client.get(url + "/health/ready"),
                                             client.get(url + "/stats", headers=operator))
        ready = health.json()
        # Ready but degraded (e.g. outbox rows parked): up, yet not "up" (decision 0021).
        up = health.status_code == 200 and ready.get("status") != "degraded"
        component = {"status": "up" if up else "degraded", "url": url, "checks": ready.get("checks"),
                     **({"problems": ready["problems"]} if ready.get("problems") else {})}
        if stats.status_code != 200:  # e.g. the operator's token refused: say so, count nothing
            return {**component, "stats": stats.status_code}, None
        return component, stats.json()
    except httpx.HTTPError as exc:
        return {"status": "down", "url": url, "error": repr(exc)}, None


def supervision(state: State) -> dict[str, dict[str, Any]]:
    """What `punte up`'s supervisor last wrote of each process it watches: state (running,
    restarting, given up, lost), restarts, last exit and, when given up or lost, why."""
    path = state.root / SUPERVISION_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not supervised (e.g. a Stack with supervise=False)
        return {}


def add_supervision(components: dict[str, Any], state: State) -> None:
    """Each component's `supervisor` entry; a process the supervisor gave up on or lost is
    down whatever else answered."""
    for name, watch in supervision(state).items():
        component = components.setdefault(name, {"status": "up" if watch["state"] == "running" else "down"})
        component["supervisor"] = watch
        if watch["state"] in ("given up", "lost"):
            component["status"] = "down"


def operator_kafka_settings(state: State, runtime: dict[str, Any]) -> Settings | None:
    """On `punte up --broker kafka`, the operator reads every topic as the cluster's admin
    (its password beside the cluster's data, decision 0027); None: the environment's."""
    password = state.root / "kafka" / "admin-password"
    if runtime.get("broker") != "kafka" or not password.exists():
        return None
    return Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                    kafka_username="admin", kafka_password=password.read_text().strip())


async def collect(state: State) -> dict[str, Any]:
    runtime = json.loads(state.runtime_file.read_text())
    urls: dict[str, str] = runtime["services"]
    components: dict[str, Any] = {}
    # Topics are counted first: the audit count read afterwards has had time to catch up,
    # so on a live network "covers" means the trail holds at least what the topics held.
    epoch: broker_epoch.Epoch | None = None
    try:
        on_topics: int | None = await topic_messages(runtime["kafka_bootstrap"], settings=operator_kafka_settings(state, runtime))
        components["broker"] = {"status": "up", "bootstrap": runtime["kafka_bootstrap"]}
        # Its epoch (decision 0026): none means empty or not provisioned, whatever answers.
        epoch = await broker_epoch.read(runtime["kafka_bootstrap"], settings=operator_kafka_settings(state, runtime))
        if epoch is None:
            components["broker"].update(status="empty", reason=broker_epoch.BROKER_EMPTY,
                                        problems=["the broker has no epoch marker (empty or not provisioned): "
                                                  "punte replay"])
        else:
            components["broker"]["epoch"] = {"id": epoch.id, "created_at": epoch.created_at.isoformat()}
    except Exception as exc:
        on_topics = None
        components["broker"] = {"status": "down", "error": repr(exc)}
    stats: dict[str, dict[str, Any]] = {}
    operator = {"Authorization": f"Bearer {operator_token(state, urls['identity'])}"}
    async with httpx.AsyncClient(timeout=10) as client:
        checked = await asyncio.gather(*(_check(client, name, url, operator) for name, url in urls.items()))
        for name, (component, service_stats) in zip(urls, checked, strict=True):
            components[name] = component
            if service_stats is not None:
                stats[name] = service_stats
        verify: dict[str, Any] = {}
        if components.get("audit", {}).get("status") == "up":
            verify = (await client.get(urls["audit"] + "/verify", headers=operator)).json()
    database_up = all(c.get("checks", {}).get("database") for n, c in components.items() if n in SERVICES)
    components["database"] = {"status": "up" if database_up else "down"}
    add_supervision(components, state)

    def count(service: str, key: str) -> int:
        return int(stats.get(service, {}).get("counts", {}).get(key, 0))

    counts = {
        "reports": count("intake", "reports"),
        "outcomes": count("intake", "outcomes") + count("referral", "outcomes"),
        "report_outcomes": count("intake", "outcomes"),
        "cases": count("intake", "cases"),
        "referrals": count("referral", "referrals"),
        "referrals_accepted": count("referral", "accepted"),
        "referral_commands": count("referral", "commands"),
        "notifications": count("notification", "notifications"),
        "audit_entries": count("audit", "audit_entries"),
        "topic_messages": on_topics,
    }
    pending = {n: s.get("outbox", {}).get("pending") for n, s in stats.items()}
    parked = {n: int(s.get("outbox", {}).get("parked") or 0) for n, s in stats.items()}
    dead_letters = {n: int(s.get("dead_letters", {}).get("total") or 0) for n, s in stats.items()}
    # Which broker epoch each service reads, and how often it saw a new one (decision 0026).
    epochs = {n: s.get("broker") for n, s in stats.items() if s.get("broker") is not None}
    return {
        "components": components,
        "counts": counts,
        "audit_verified": bool(verify.get("verified")),
        # "verified", "lagging" (messages on the broker not audited yet: not_audited) or "failed".
        "audit_state": verify.get("state", "unknown"),
        "audit": verify,
        "consistent": {
            "every_report_has_an_outcome": counts["reports"] == counts["report_outcomes"],
            "audit_covers_every_message": on_topics is not None and counts["audit_entries"] >= on_topics,
            # A parked row is an output not yet delivered: the books do not close until an
            # operator retries or discards it (punte outbox parked).
            "no_outbox_row_parked": not any(parked.values()),
            # Every service reads the broker's epoch: none holds on an empty broker or reads an old log.
            "every_service_on_the_broker_epoch": epoch is not None and all(
                e.get("epoch") == epoch.id for e in epochs.values()),
        },
        "broker_epochs": epochs,
        "outbox_pending": pending,
        "outbox_parked": parked,
        "dead_letters": dead_letters,
    }
