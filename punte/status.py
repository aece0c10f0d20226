"""`punte status`: the health of a network, local or remote (``survey`` and ``assess``:
readiness, metrics, consumer offsets, the audit's verification), and the books of the local
network that the tests keep (``collect``: counts that show nothing was lost)."""
from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.reference import BROKER_EPOCH_TOPIC, institutions, topic_names
from punte.stack import SERVICES, SUPERVISION_FILE
from punte.state import State
from runtime import broker_epoch
from runtime.kafka import broker_partitions, client_options, running
from runtime.settings import Settings

if TYPE_CHECKING:
    from punte.remote import Network


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
    async with running(consumer):
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
    """The books of the local embedded network, for the tests and the bench: every
    component's health and the counts that show nothing was lost, topics counted by reading
    every message (demo scale). `punte status` reads health, metrics and offsets instead
    (``survey``)."""
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


# --- `punte status` against any network (decision 0038) ----------------------------------
# Health, metrics and offsets instead of reading every message: what each service says of
# itself (/health/ready, /metrics, /stats), the audit's own verification (/verify, which
# compares the trail with the end of every partition), and each consumer group's lag from
# its committed offsets when the broker is reachable.


async def consumer_lag(bootstrap: str, groups: set[str], settings: Settings | None = None,
                       read_seconds: float = 10.0) -> dict[str, dict[str, int]]:
    """Group -> "topic[partition]" -> messages on the broker the group has not committed
    past, for the network's groups (``groups`` and every ``punte-*`` group the broker
    lists, so a stopped service's groups count too, where the broker lists them). A
    partition a member holds but the group never committed on counts from its first offset
    still held; one neither held nor committed on is not the group's, as far as the broker
    says (Tansu gives no member assignments: there, committed partitions only).

    The ends are read, not only asked for (runtime.kafka.partition_bounds: the embedded
    broker's ListOffsets is stale after multi-record batches). Committed offsets are asked
    for the network's partitions by name: Tansu 0.6 answers "all of the group's" in a
    shape aiokafka cannot read."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    from runtime.kafka import make_admin, partition_bounds

    network = set(topic_names(institutions()))
    bounds = {tp: b for tp, b in (await partition_bounds(bootstrap, r"^punte\.", read_seconds=read_seconds,
                                                          settings=settings)).items() if tp[0] in network}
    positions = [TopicPartition(topic, partition) for topic, partition in sorted(bounds)]
    admin = make_admin(bootstrap, settings)
    await admin.start()
    try:
        try:
            groups = groups | {g for g, *_ in await admin.list_consumer_groups() if str(g).startswith("punte-")}
        except Exception:  # listing needs Describe on the cluster: the services' groups only, then
            pass
        committed: dict[str, dict[tuple[str, int], int]] = {}
        held: dict[str, set[tuple[str, int]]] = {g: set() for g in groups}
        for group in sorted(groups):
            offsets = await admin.list_consumer_group_offsets(group, partitions=positions) if positions else {}
            committed[group] = {(tp.topic, tp.partition): o.offset for tp, o in offsets.items() if o.offset >= 0}
        try:
            for response in await admin.describe_consumer_groups(sorted(groups)):
                for described in response.groups:
                    group, members = described[1], described[5]
                    for member in members:
                        if member[-1]:
                            for topic, numbers in ConsumerProtocolMemberAssignment.decode(member[-1]).assignment:
                                held[group] |= {(topic, p) for p in numbers}
        except Exception:  # no member assignments: committed partitions only
            pass
    finally:
        await admin.close()
    lag: dict[str, dict[str, int]] = {}
    for group in sorted(groups):
        behind: dict[str, int] = {}
        for position in sorted(set(committed[group]) | held[group]):
            if position not in bounds:
                continue
            first, end = bounds[position]
            missing = max(0, end - max(first, committed[group].get(position, first)))
            if missing:
                behind[f"{position[0]}[{position[1]}]"] = missing
        lag[group] = behind
    return lag


def read_metrics(text: str) -> dict[str, Any]:
    """What `punte status` takes from a service's /metrics (runtime.metrics NAMES): its
    consumer groups (stopped, assigned), outbox rows by state, dead letters, whether the
    broker has its epoch; and the consumers' own lag if the service exposes it."""
    from prometheus_client.parser import text_string_to_metric_families

    consumers: dict[str, dict[str, Any]] = {}
    outbox: dict[str, int] = {}
    dead_letters = 0
    provisioned: bool | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if sample.name in ("punte_consumer_stopped", "punte_consumer_assigned"):
                consumers.setdefault(labels["group"], {"group": labels["group"]})[
                    sample.name.removeprefix("punte_consumer_")] = bool(value)
            elif sample.name == "punte_consumer_lag" and "group" in labels:
                consumer = consumers.setdefault(labels["group"], {"group": labels["group"]})
                consumer["lag_reported"] = consumer.get("lag_reported", 0) + int(value)
            elif sample.name == "punte_outbox_rows":
                outbox[labels["state"]] = outbox.get(labels["state"], 0) + int(value)
            elif sample.name == "punte_dead_letters":
                dead_letters += int(value)
            elif sample.name == "punte_broker_provisioned":
                provisioned = bool(value)
    return {"consumers": sorted(consumers.values(), key=lambda c: c["group"]), "outbox": outbox,
            "dead_letters": dead_letters, "broker_provisioned": provisioned}


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": ")


async def _look_at(client: httpx.AsyncClient, name: str, url: str, headers: dict[str, str]) -> dict[str, Any]:
    """One service as the operator sees it: its readiness (ready, degraded, not-ready, or
    down when it does not answer), its metrics and its counts."""
    from punte.remote import failure_line

    seen: dict[str, Any] = {"url": url}
    try:
        ready = await client.get(url + "/health/ready")
    except httpx.HTTPError as exc:
        return {**seen, "state": "down", "problems": [failure_line(name, "GET", url + "/health/ready", exc)]}
    try:
        answer = ready.json()
    except ValueError:
        return {**seen, "state": "down", "problems": [failure_line(name, "GET", url + "/health/ready", ready)]}
    seen["state"] = answer.get("status", "not-ready") if ready.status_code in (200, 503) else "down"
    seen["checks"] = answer.get("checks", {})
    seen["problems"] = list(answer.get("problems") or [])
    if seen["state"] == "not-ready":
        failed = [k for k, ok in seen["checks"].items() if not ok]
        seen["problems"].append(f"not ready: {', '.join(failed) or 'no reason given'}")
    for path, key in (("/metrics", "metrics"), ("/stats", "stats")):
        try:
            got = await client.get(url + path, headers=headers if key == "stats" else None)
        except httpx.HTTPError as exc:
            seen["problems"].append(failure_line(name, "GET", url + path, exc))
            continue
        if not got.is_success:
            seen["problems"].append(failure_line(name, "GET", url + path, got))
        elif key == "metrics":
            seen.update(read_metrics(got.text))
        else:
            stats = got.json()
            seen["counts"] = stats.get("counts", {})
            seen["broker"] = stats.get("broker")  # the broker epoch it reads (decision 0026)
            stopped = {c["group"]: c["stopped"] for c in stats.get("consumers", []) if c.get("stopped")}
            seen["stopped_why"] = {g: f"{s.get('reason')} at {s.get('position')}" for g, s in stopped.items()}
    return seen


async def survey(network: "Network", lag_seconds: float = 10.0) -> dict[str, Any]:
    """The network as `punte status` shows it (local or remote): each service, each consumer
    group's lag, the audit's verification; no message is read but a partition's last."""
    token = network.token_for("operator")
    headers = {"Authorization": f"Bearer {token}"}
    services: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        known = [s for s in SERVICES if network.knows(s)]
        looked = await asyncio.gather(*(_look_at(client, s, network.url(s), headers) for s in known))
        services = dict(zip(known, looked, strict=True))
        for missing in (s for s in SERVICES if s not in services):
            services[missing] = {"url": None, "state": "unknown", "problems": [f"no URL for {missing}"]}
        audit: dict[str, Any] = {"state": "unknown"}
        if services["audit"]["state"] not in ("down", "unknown"):
            from punte.remote import failure_line
            url = network.url("audit") + "/verify"
            try:
                answer = await client.get(url, headers=headers, timeout=120)
                audit = answer.json() if answer.is_success else {"state": "unknown",
                                                                 "problems": [failure_line("audit", "GET", url, answer)]}
            except (httpx.HTTPError, ValueError) as exc:
                audit = {"state": "unknown", "problems": [f"audit GET {url}: {_one_line(exc)}"]}
    broker: dict[str, Any] = {"bootstrap": network.bootstrap}
    epoch: broker_epoch.Epoch | None = None
    if network.bootstrap:
        groups = {c["group"] for s in services.values() for c in s.get("consumers", [])}
        try:
            broker["lag"] = await asyncio.wait_for(
                consumer_lag(network.bootstrap, groups, network.kafka, read_seconds=lag_seconds), 60)
            broker["state"] = "up"
            epoch = await broker_epoch.read(network.bootstrap, settings=network.kafka)
            if epoch is None:
                broker.update(state="empty", problems=[f"broker {network.bootstrap}: no epoch marker (empty or not "
                                                       "provisioned): punte replay"])
            else:
                broker["epoch"] = {"id": epoch.id, "created_at": epoch.created_at.isoformat()}
        except Exception as exc:  # the status still shows the rest; the broker's line says why
            broker.update(state="down", problems=[f"broker {network.bootstrap}: {_one_line(exc) or 'no answer'}"])
    else:
        broker["state"] = "not asked"
    read = {name: s["broker"] for name, s in services.items() if s.get("broker")}
    result: dict[str, Any] = {"network": network.name, "services": services, "broker": broker, "audit": audit,
                              # Every service reads the broker's epoch: none holds on an empty broker or
                              # reads an old log (None: the broker was not asked).
                              "consistent": {"every_service_on_the_broker_epoch": None if not network.bootstrap
                                             else epoch is not None and len(read) == len(SERVICES)
                                             and all(e.get("epoch") == epoch.id for e in read.values())}}
    if network.state is not None:  # `punte up`'s supervisor: restarts, and why it gave up
        result["supervision"] = supervision(network.state)
    return result


def assess(found: dict[str, Any], max_lag: int) -> tuple[list[str], list[str], int]:
    """Problems (something down, stopped, not verifying: exit 1) and lag (more than
    ``max_lag`` messages behind, in a group or in the audit: exit 3), one line each, and
    the exit code: 0 when neither. Pure: from what ``survey`` found."""
    problems: list[str] = []
    lagging: list[str] = []
    for name, service in found["services"].items():
        state = service["state"]
        if state != "ready":
            problems.append(f"{name}: {state}" + (f" — {service['problems'][0]}" if service.get("problems") else ""))
        problems += [f"{name}: {p}" for p in service.get("problems", [])[1 if state != 'ready' else 0:]]
        for consumer in service.get("consumers", []):
            if consumer.get("stopped"):
                why = service.get("stopped_why", {}).get(consumer["group"])
                problems.append(f"{name}: consumer {consumer['group']} stopped"
                                + (f" ({why}): punte consumers resume {name} {consumer['group']}" if why else ""))
    for name, watch in found.get("supervision", {}).items():
        if watch.get("state") in ("given up", "lost"):
            problems.append(f"{name}: {watch['state']} — {watch.get('reason') or ''}".rstrip(" —"))
    broker = found["broker"]
    problems += broker.get("problems", [])
    if "epoch" in broker:
        problems += [f"{name}: reads broker epoch {service['broker'].get('epoch')}, the broker's is "
                     f"{broker['epoch']['id']}" for name, service in found["services"].items()
                     if service.get("broker") and service["broker"].get("epoch") != broker["epoch"]["id"]]
    for group, partitions in sorted(broker.get("lag", {}).items()):
        behind = sum(partitions.values())
        if behind > max_lag:
            worst = sorted(partitions.items(), key=lambda kv: -kv[1])[:3]
            lagging.append(f"consumer group {group}: {behind} messages behind "
                           f"({', '.join(f'{p} {n}' for p, n in worst)}{', …' if len(partitions) > 3 else ''})")
    if broker["state"] == "not asked":  # the services' own figures, when they expose them
        for name, service in found["services"].items():
            for consumer in service.get("consumers", []):
                if consumer.get("lag_reported", 0) > max_lag:
                    lagging.append(f"{name}: consumer {consumer['group']} {consumer['lag_reported']} messages behind")
    audit = found["audit"]
    if audit.get("state") == "failed":
        problems.append(f"audit: does NOT verify — {'; '.join(audit.get('problems', []))}")
    elif audit.get("state") == "lagging":
        if int(audit.get("not_audited") or 0) > max_lag:
            lagging.append(f"audit: {audit['not_audited']} messages on the broker not audited yet")
    elif audit.get("state") != "verified":
        why = "; ".join(audit.get("problems", [])) or "the audit service did not answer"
        problems.append(f"audit: not verified — {why}")
    return problems, lagging, 1 if problems else 3 if lagging else 0
