"""Chaos bench: signed reports flow while every service is killed, PostgreSQL crashes and
the broker hangs; then the books are checked the way a user would check them.

    python -m bench.chaos [--reports N] [--rate R] [--fault-every S] [--redeliveries F]
                          [--malformed F] [--seed S] [--state-dir DIR] [--timeout S]
                          [--broker tansu|kafka] [--kill-kafka-broker]

Starts its own Stack (embedded PostgreSQL and Tansu broker, the four services, supervised
as `punte up` supervises them; with ``--broker kafka`` a three-node Apache Kafka cluster
instead of Tansu, with the network's principals and ACLs, decision 0027) and sends N
signed v3 reports from the county's reporting institutions, paced at R/s. On Apache Kafka
each institution writes as its own principal (its SCRAM credential from the stack's
`punte kafka apply`), and the books are read as the cluster's admin: they span every
institution's delivery topic and the internal topics, which no institution may read. A
fraction is sent again exactly, byte for byte (an institution's retry); a fraction is
malformed in ways intake must refuse, each with its code from
contracts/reference/rejection-codes.yaml. Meanwhile, on a seeded schedule, every
`--fault-every` seconds or so, one fault: a service SIGKILLed (each at least once per
round), the PostgreSQL postmaster SIGKILLed (the supervisor starts it again), the broker
paused for 10 s (on Apache Kafka, one node), and with ``--kill-kafka-broker`` one Kafka
node SIGKILLed and started again 10 s later. Then it waits until the network is quiet (or
the timeout) and checks:

- every good report has exactly one outcome on its institution's delivery topic, read as
  the institution reads it (an outcome under two event ids is a double; the same id twice
  is a redelivery its system drops);
- every malformed one is rejected with its code;
- every new case has exactly one initial referral, its lead exactly one referral-requested
  notice and every informed institution exactly one case-informed notice; the lead one
  report-added notice per report that joined the case;
- no row twice in the services' databases (a case, a referral, a deadline, a notice);
- every dead letter is explained by a malformed message refused at the door, and there
  are no others;
- the audit's /verify says verified: nothing past its trail on the broker, no gap.

It prints one JSON summary and exits 1 when the books do not balance. See bench/README.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer

from bench.e2e import cpu_seconds, make_reports, service_stats, stack_processes
from bench.figures import machine, rounded
from bench.stacks import Senders, setup, started_stack
from contracts.events import EventType
from contracts.reference import delivery_topic, ingress_topic, institutions, topic_partitions
from punte import faults
from punte.apache_kafka import KafkaCluster, available
from punte.stack import SERVICES, Stack
from punte.status import operator_token
from runtime.cloudevents import CloudEvent, decode
from runtime.kafka import client_options
from runtime.log import configure_logging
from runtime.settings import Settings
from runtime.signing import SigningKey

BROKER_PAUSE_SECONDS = 10.0
# One round of faults: every service killed once, PostgreSQL crashed once, the broker
# paused once (on Apache Kafka: one node).
ROUND = (*(f"kill {name}" for name in SERVICES), "kill postgres", "pause broker")
# On Apache Kafka (--kill-kafka-broker): one node SIGKILLed per round, started again after
# KAFKA_DOWN_SECONDS on its data, as an operator or Kubernetes would.
KAFKA_BROKER_KILL = "kill kafka broker"
KAFKA_DOWN_SECONDS = 10.0
# A node killed with SIGKILL recovers every partition's log before it listens again (no
# clean shutdown file): a minute or more for its ~350 partitions on a loaded 2-core machine.
KAFKA_RESTART_TIMEOUT = 600.0
READ_PATTERN = r"^punte\.(delivery\..+|cases|referrals|deadletter)$"


# --- what is sent -------------------------------------------------------------------------


@dataclass(frozen=True)
class Malformation:
    """A way of getting a report wrong, the code intake must refuse it with, and whether the
    refusal is also a dead letter (refused at the door, before intake reads the report:
    runtime.ingress.receive) or only an answer (the report read and found wrong)."""

    code: str
    dead_letter: bool


MALFORMATIONS: dict[str, Malformation] = {
    "unsigned": Malformation("MISSING_SIGNATURE", True),
    "tampered": Malformation("BAD_SIGNATURE", True),
    "not json": Malformation("MALFORMED_PAYLOAD", True),
    "no ce_time": Malformation("MALFORMED_ENVELOPE", True),
    "another's topic": Malformation("SOURCE_MISMATCH", True),
    "stale": Malformation("STALE_EVENT", True),
    "schema": Malformation("SCHEMA_VIOLATION", True),
    "unknown type": Malformation("UNKNOWN_EVENT_TYPE", True),
    "sealed for another report": Malformation("SEALED_MISMATCH", False),
}


@dataclass
class Message:
    """One message an institution's system sends, exactly as it goes on the wire."""

    id: str  # ce_id: what its outcome names (subject_id)
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    answered_to: str  # the institution whose delivery topic carries its outcome
    malformed: str | None = None  # a key of MALFORMATIONS

    @property
    def expected_code(self) -> str | None:
        return MALFORMATIONS[self.malformed].code if self.malformed else None


def wire(event: CloudEvent, reporter: str) -> Message:
    return Message(event.id, ingress_topic(reporter), event.id.encode(), event.body(), event.headers(), reporter)


def malformed(kind: str, reporter: str, event: CloudEvent, key: SigningKey, other: CloudEvent,
              stranger: str) -> Message:
    """``event`` (signed by ``reporter`` with ``key``) made wrong in the way ``kind`` says;
    ``other`` is another report, ``stranger`` another institution."""
    good = wire(event, reporter)
    unsigned = {"ce_signature", "ce_keyid", "ce_sigversion"}

    def resigned(**changes: Any) -> Message:
        return replace(wire(key.sign(replace(event, extensions={}, **changes)), reporter), malformed=kind)

    if kind == "unsigned":
        return replace(good, headers=[h for h in good.headers if h[0] not in unsigned], malformed=kind)
    if kind == "tampered":  # signed, then a clear field changed on the way
        data = {**event.data, "immediate_danger": not event.data.get("immediate_danger")}
        return replace(good, value=json.dumps(data, separators=(",", ":")).encode(), malformed=kind)
    if kind == "not json":
        return replace(good, value=good.value[: len(good.value) // 2], malformed=kind)
    if kind == "no ce_time":
        return replace(good, headers=[h for h in good.headers if h[0] != "ce_time"], malformed=kind)
    if kind == "another's topic":  # signed by its sender, written on another's ingress topic
        return replace(good, topic=ingress_topic(stranger), answered_to=stranger, malformed=kind)
    if kind == "stale":
        old = (datetime.now(timezone.utc) - timedelta(days=8)).isoformat().replace("+00:00", "Z")
        return resigned(time=old)
    if kind == "schema":
        return resigned(data={k: v for k, v in event.data.items() if k != "channel"})
    if kind == "unknown type":
        return resigned(type=EventType.REPORT_SUBMITTED_V3.value.replace(".v3", ".v9"))
    if kind == "sealed for another report":
        return resigned(data={**event.data, "sealed": other.data["sealed"]})
    raise ValueError(kind)


def messages(stack: Stack, rng: random.Random, n: int, malformed_share: float) -> list[Message]:
    """N reports from the county's reporting institutions (bench.e2e.make_reports), a share
    of them malformed, each kind in turn."""
    reports = make_reports(stack, rng, n)
    everyone = sorted({r for r, _ in reports})
    kinds = list(MALFORMATIONS)
    out: list[Message] = []
    made = 0
    for i, (reporter, event) in enumerate(reports):
        if rng.random() < malformed_share:
            kind = kinds[made % len(kinds)]
            made += 1
            other = reports[(i + 1) % len(reports)][1]
            stranger = rng.choice([r for r in everyone if r != reporter])
            out.append(malformed(kind, reporter, event, stack.state.institution_key(reporter), other, stranger))
        else:
            out.append(wire(event, reporter))
    return out


def with_redeliveries(sent: list[Message], rng: random.Random, share: float) -> list[Message]:
    """The send order: each message once, and a share of them again, exactly, a little
    later (an institution's system retrying one it was not sure had gone)."""
    again: dict[int, list[Message]] = defaultdict(list)
    for i, message in enumerate(sent):
        if rng.random() < share:
            again[min(len(sent) - 1, i + rng.randint(5, 300))].append(message)
    order: list[Message] = []
    for i, message in enumerate(sent):
        order += [message, *again[i]]
    return order


# --- what the network says -----------------------------------------------------------------


@dataclass
class Books:
    """Everything on the delivery topics (outcomes, notices), punte.cases, punte.referrals
    and punte.deadletter, read from the start, as the institutions and an operator read
    them; every id kept, so a double shows."""

    bootstrap: str
    settings: Settings | None = None  # who reads: on Apache Kafka, the admin (module doc)
    # report id -> outcome event id -> (delivery topic, data)
    outcomes: dict[str, dict[str, tuple[str, dict]]] = field(default_factory=lambda: defaultdict(dict))
    opened: dict[str, dict[str, dict]] = field(default_factory=lambda: defaultdict(dict))  # report -> id -> data
    added: dict[str, dict[str, dict]] = field(default_factory=lambda: defaultdict(dict))  # report -> id -> data
    # case id -> referral id -> event ids, for the case's initial referral (kind "case")
    referred: dict[str, dict[str, set[str]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(set)))
    # (recipient, kind, case id, referral id) -> notification ids
    notices: dict[tuple[str, str, str, str | None], set[str]] = field(default_factory=lambda: defaultdict(set))
    dead_letters: dict[str, dict] = field(default_factory=dict)  # dead letter id -> data
    received: int = 0
    repeated: int = 0  # the same event id again on a topic: a redelivery, harmless
    # ... by kind of topic (delivery, cases, referrals, deadletter): where the repeats come from
    repeated_on: Counter = field(default_factory=Counter)
    _seen: set[tuple[str, str]] = field(default_factory=set)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task | None = None

    async def start(self, timeout: float = 60) -> None:
        self._consumer = consumer = AIOKafkaConsumer(
            **client_options(self.settings), bootstrap_servers=self.bootstrap, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False, metadata_max_age_ms=1000,
            fetch_max_bytes=16 << 20)
        consumer.subscribe(pattern=READ_PATTERN)
        await consumer.start()
        expected = sum(n for name, n in topic_partitions(institutions())
                       if name in ("punte.cases", "punte.referrals", "punte.deadletter")
                       or name.startswith("punte.delivery."))
        deadline = time.monotonic() + timeout
        while len(consumer.assignment()) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(consumer.assignment())}/{expected} partitions assigned")
            await asyncio.sleep(0.1)
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for record in records:
                    self.read(record.topic, decode(record.headers, record.value))

    def read(self, topic: str, event: CloudEvent) -> None:
        self.received += 1
        if (topic, event.id) in self._seen:
            self.repeated += 1
            self.repeated_on[topic.split(".")[1]] += 1
        self._seen.add((topic, event.id))
        data = event.data
        if event.type == EventType.OUTCOME.value:
            self.outcomes[data["subject_id"]][event.id] = (topic, data)
        elif event.type == EventType.CASE_OPENED.value:
            self.opened[data["report_id"]][event.id] = data
        elif event.type == EventType.CASE_REPORT_ADDED.value:
            self.added[data["report_id"]][event.id] = data
        elif event.type == EventType.REFERRAL_REQUESTED.value and data.get("kind") == "case":
            self.referred[data["case_id"]][data["referral_id"]].add(event.id)
        elif event.type == EventType.CASE_NOTIFICATION.value:
            self.notices[(data["recipient"], data["kind"], data["case_id"], data.get("referral_id"))].add(
                data["notification_id"])
        elif event.type == EventType.DEAD_LETTER_V2.value:
            self.dead_letters[event.id] = data

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    def new_cases(self) -> dict[str, dict]:
        """case id -> its case.opened (the first, if a double opened it twice)."""
        out: dict[str, dict] = {}
        for versions in self.opened.values():
            for data in versions.values():
                out.setdefault(data["case_id"], data)
        return out

    def unsettled(self, sent: list[Message]) -> int:
        """What is still to come for the books to close: outcomes, cases of accepted reports,
        initial referrals and the notices they cause."""
        missing = sum(1 for m in sent if not self.outcomes.get(m.id))
        accepted = [m for m in sent if not m.malformed and _status(self.outcomes.get(m.id)) == "accepted"]
        missing += sum(1 for m in accepted if not self.opened.get(m.id) and not self.added.get(m.id))
        for case_id, case in self.new_cases().items():
            referrals = self.referred.get(case_id)
            if not referrals:
                missing += 1
                continue
            for referral_id in referrals:
                missing += not self.notices.get((case["lead"], "referral-requested", case_id, referral_id))
            missing += sum(1 for who in case["informed"] if not self.notices.get((who, "case-informed", case_id, None)))
        return missing


def _status(outcomes: dict[str, tuple[str, dict]] | None) -> str | None:
    return next(iter(outcomes.values()))[1]["status"] if outcomes else None


def progress(line: str) -> None:
    """A line on stderr while a long run goes on; the summary alone is on stdout."""
    print(line, file=sys.stderr, flush=True)


# --- the faults -----------------------------------------------------------------------------


@dataclass
class Fault:
    what: str
    at_s: float  # since the first report was sent
    pid: int | None = None
    node: int | None = None  # the Apache Kafka node it hit
    seconds: float | None = None  # how long it lasted (the broker's pause, a Kafka node down)
    recovered_after_s: float | None = None  # until what it hit was ready again (Chaos._recovery)


def fault_round(options: "Options") -> tuple[str, ...]:
    """One round's faults: ROUND, and on Apache Kafka with --kill-kafka-broker a node killed."""
    return (*ROUND, KAFKA_BROKER_KILL) if options.kill_kafka_broker else ROUND


def fault_plan(rng: random.Random, round_: tuple[str, ...] = ROUND) -> Iterator[str]:
    """Rounds of ``round_`` in a seeded order; a service is not killed twice in a row."""
    last = None
    while True:
        order = list(round_)
        rng.shuffle(order)
        if order[0] == last:
            order.append(order.pop(0))
        yield from order
        last = order[-1]


async def ready(client: httpx.AsyncClient, stack: Stack, name: str) -> bool:
    try:
        return (await client.get(stack.url(name) + "/health/ready", timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False


async def all_ready(client: httpx.AsyncClient, stack: Stack) -> bool:
    return all(await asyncio.gather(*(ready(client, stack, n) for n in SERVICES)))


class KafkaTargets:
    """Which Apache Kafka node a fault hits: the leader of the ingress partition of one of
    the busiest institutions (seeded), where their reports are being written; the next
    node in turn instead when the same kind of fault hit that one last, so that each kind
    goes round the cluster."""

    def __init__(self, cluster: KafkaCluster, rng: random.Random, busiest: list[str]) -> None:
        self.cluster, self.rng, self.busiest = cluster, rng, busiest
        self.last: dict[str, int] = {}  # fault -> the node it hit last

    def pick(self, fault: str) -> int:
        ids = sorted(node.node_id for node in self.cluster.nodes)
        leader = self.cluster.leader(ingress_topic(self.rng.choice(self.busiest)))
        last = self.last.get(fault)
        if leader not in ids or leader == last:
            leader = ids[(ids.index(last) + 1) % len(ids)] if last in ids else ids[0]
        self.last[fault] = leader
        return leader


def busiest(order: list[Message], count: int = 5) -> list[str]:
    """The institutions whose ingress topics get the most messages in ``order``."""
    return [topic.removeprefix("punte.ingress.") for topic, _ in Counter(m.topic for m in order).most_common(count)]


class Chaos:
    """Causes the faults, one every ``every`` seconds or so (seeded), until ``rounds``
    rounds are done and ``until`` is set; notes when each happened and how long the network
    took to be ready again."""

    def __init__(self, stack: Stack, client: httpx.AsyncClient, rng: random.Random, every: float,
                 start: float, rounds: int | None, round_: tuple[str, ...] = ROUND,
                 targets: KafkaTargets | None = None) -> None:
        self.stack, self.client, self.rng, self.every, self.start = stack, client, rng, every, start
        self.rounds = rounds
        self.round = round_
        self.targets = targets
        self.done: list[Fault] = []
        self.sending_done = asyncio.Event()
        self._recoveries: list[asyncio.Task] = []
        # When each service was last seen ready after a start: a service is not killed
        # within the supervisor's quick-exit window of its start, which it would rightly
        # take for a failure at start (and give up after five).
        self._up_since: dict[str, float] = {}

    def now(self) -> float:
        return time.monotonic() - self.start

    async def run(self) -> None:
        plan = fault_plan(self.rng, self.round)
        count = 0
        while True:
            full_rounds = count // len(self.round)
            if count % len(self.round) == 0 and self.sending_done.is_set() and full_rounds >= (self.rounds or 1):
                break
            if self.rounds is not None and full_rounds >= self.rounds:
                await self.sending_done.wait()
                continue
            await asyncio.sleep(self.every * self.rng.uniform(0.5, 1.5))
            await self.cause(next(plan))
            count += 1
        await asyncio.gather(*self._recoveries)

    async def cause(self, what: str) -> None:
        if what.removeprefix("kill ") in SERVICES:
            name = what.removeprefix("kill ")
            await self._wait_up(name)
            fault = Fault(what, self.now())
            fault.pid = await asyncio.to_thread(faults.kill_service, self.stack, name)
            self._up_since.pop(name, None)
        elif what == "kill postgres":
            await self._wait_database()
            fault = Fault(what, self.now())
            fault.pid = await asyncio.to_thread(faults.kill_postgres, self.stack)
        elif what == "pause broker":
            node = await self._kafka_target(what) if self.stack.kafka is not None else None
            fault = Fault(what, self.now(), node=node)
            if node is None:
                faults.pause_broker(self.stack)
            else:
                fault.pid = faults.pause_kafka_node(self.stack, node)
            try:
                await asyncio.sleep(BROKER_PAUSE_SECONDS)
            finally:
                if node is None:
                    faults.resume_broker(self.stack)
                else:
                    faults.resume_kafka_node(self.stack, node)
            fault.seconds = self.now() - fault.at_s
        elif what == KAFKA_BROKER_KILL:
            node = await self._kafka_target(what)
            fault = Fault(what, self.now(), node=node)
            fault.pid = await asyncio.to_thread(faults.kill_kafka_node, self.stack, node)
            progress(f"{fault.at_s:7.1f} s  {what} (node {node}): down for {KAFKA_DOWN_SECONDS:g} s ...")
            await asyncio.sleep(KAFKA_DOWN_SECONDS)
            await asyncio.to_thread(faults.restart_kafka_node, self.stack, node, KAFKA_RESTART_TIMEOUT)
            fault.seconds = self.now() - fault.at_s  # down, then until every node names it again
        else:
            raise ValueError(what)
        self.done.append(fault)
        if what == KAFKA_BROKER_KILL:
            progress(f"{self.now():7.1f} s  kafka node {fault.node} started again, the cluster whole")
        else:
            progress(f"{fault.at_s:7.1f} s  {what}" + (f" (node {fault.node})" if fault.node is not None else ""))
        self._recoveries.append(asyncio.create_task(self._recovery(fault)))

    async def _wait_up(self, name: str, timeout: float = 300) -> None:
        """Until ``name`` is ready and, if it was killed before, has been up for the
        supervisor's quick-exit window since."""
        quick = self.stack.restart_policy.quick_exit
        killed_before = any(f.what == f"kill {name}" for f in self.done)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await ready(self.client, self.stack, name):
                since = self._up_since.setdefault(name, time.monotonic())
                if not killed_before or time.monotonic() - since >= quick:
                    return
            else:
                self._up_since.pop(name, None)
            await asyncio.sleep(0.5)
        raise TimeoutError(f"{name} not ready for {timeout}s: {self.stack.supervision().get(name)}")

    async def _kafka_target(self, fault: str, timeout: float = 300) -> int:
        """A node to hit, once every partition is fully in sync again (a node that came back
        has caught up): never two nodes out at once, which min.insync.replicas 2 would
        rightly take for an outage of writes."""
        assert self.targets is not None, "a Kafka fault needs KafkaTargets"
        deadline = time.monotonic() + timeout
        while await asyncio.to_thread(self.targets.cluster.under_replicated):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Apache Kafka partitions still under-replicated after {timeout}s")
            await asyncio.sleep(1)
        return await asyncio.to_thread(self.targets.pick, fault)

    async def _wait_database(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.stack.supervision().get("database", {}).get("state") != "running":
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL not back for {timeout}s: {self.stack.supervision().get('database')}")
            await asyncio.sleep(0.5)

    async def _recovery(self, fault: Fault, timeout: float = 600) -> None:
        """How long until what the fault hit works again: a killed service ready (in a new
        process), or, after PostgreSQL or the broker, every service ready."""
        ended = fault.at_s + (fault.seconds or 0)
        await asyncio.sleep(0.5)  # the supervisor notices within its 0.5 s check
        killed = fault.what.removeprefix("kill ")  # after a Kafka node: every service ready
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if killed in SERVICES:
                back = await ready(self.client, self.stack, killed)
            else:
                back = (self.stack.supervision().get("database", {}).get("state", "running") == "running"
                        and await all_ready(self.client, self.stack))
            if back:
                fault.recovered_after_s = self.now() - ended
                return
            await asyncio.sleep(0.25)


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Options:
    reports: int = 10000
    rate: float = 15.0  # reports/s, redeliveries included
    fault_every: float = 5.0
    redeliveries: float = 0.05
    malformed: float = 0.05
    seed: int = 7
    timeout: float = 1800.0  # for the network to be quiet after the last fault
    rounds: int | None = None  # rounds of faults; None: as many as the sending lasts (at least one)
    kill_kafka_broker: bool = False  # on Apache Kafka only
    broker: str = "tansu"  # or "kafka": what run() starts; run_on() takes the stack's


async def send(senders: Senders, order: list[Message], rate: float, start: float) -> dict[str, int]:
    """Paced at ``rate``; a send the broker did not acknowledge (paused past the client's
    timeout) is sent again, the same bytes, as an institution's system would."""
    resent = 0
    pending: list[tuple[Message, asyncio.Future]] = []

    async def write(m: Message) -> asyncio.Future:
        return await senders.for_topic(m.topic).send(m.topic, value=m.value, key=m.key, headers=m.headers)

    for i, m in enumerate(order):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append((m, await write(m)))
    while pending:
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        failed = [m for (m, _), r in zip(pending, results, strict=True) if isinstance(r, BaseException)]
        resent += len(failed)
        pending = [(m, await write(m)) for m in failed]
    return {"resent_after_send_error": resent}


async def wait_quiet(stack: Stack, client: httpx.AsyncClient, books: Books, sent: list[Message],
                     timeout: float) -> dict[str, Any]:
    """Until the books can close, no service has an outbox row to publish and the audit
    verifies, twice in a row; or the timeout. Returns the last /verify, and when each of
    the three was first true (seconds into the wait)."""
    started = time.monotonic()
    verification: dict[str, Any] = {}
    first: dict[str, float] = {}
    calm = 0
    while time.monotonic() - started < timeout:
        await asyncio.sleep(2)
        if books.unsettled(sent):
            calm = 0
            continue
        first.setdefault("books_closed_s", time.monotonic() - started)
        stats = await service_stats(client, stack)
        if len(stats) < len(SERVICES) or any((s["outbox"]["pending"] or 0) for s in stats.values()):
            calm = 0
            continue
        first.setdefault("outboxes_empty_s", time.monotonic() - started)
        verification = await verify(client, stack)
        calm = calm + 1 if verification.get("state") == "verified" else 0
        if calm:
            first.setdefault("audit_verified_s", time.monotonic() - started)
        if calm >= 2:
            break
    verification = verification or await verify(client, stack)
    return {"waited_s": time.monotonic() - started, "verification": verification, **first}


async def verify(client: httpx.AsyncClient, stack: Stack) -> dict[str, Any]:
    try:
        answer = await client.get(stack.url("audit") + "/verify", timeout=120)
        return answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"state": "unreachable", "error": type(exc).__name__}


DUPLICATES = {
    "intake": {
        "a case opened twice for one report": "SELECT report_id FROM cases GROUP BY report_id HAVING count(*) > 1",
        "a report in two cases": "SELECT report_id FROM case_reports GROUP BY report_id HAVING count(*) > 1",
        "a report answered twice": ("SELECT event_id FROM reports WHERE event_id IS NOT NULL "
                                    "GROUP BY sender, event_id HAVING count(*) > 1"),
    },
    "referral": {
        "a case referred twice to its lead": ("SELECT case_id FROM referrals WHERE kind = 'case' "
                                              "GROUP BY case_id HAVING count(*) > 1"),
        "a deadline scheduled twice": "SELECT referral_id FROM timers GROUP BY referral_id, step HAVING count(*) > 1",
        "a referral step recorded twice": ("SELECT referral_id FROM referral_history "
                                           "GROUP BY referral_id, command, from_state, to_state HAVING count(*) > 1"),
    },
    "notification": {
        "a notice in an inbox twice": (
            "SELECT case_id FROM inbox_entries WHERE kind IN ('referral-requested', 'case-informed') "
            "GROUP BY institution, case_id, referral_id, kind HAVING count(*) > 1"),
    },
    "audit": {
        "a message audited twice": ('SELECT topic FROM audit_entries GROUP BY epoch, topic, partition, "offset" '
                                    "HAVING count(*) > 1"),
    },
}


async def duplicate_rows(stack: Stack) -> dict[str, list[str]]:
    """What each service's own database holds twice, through the stack's database URL."""
    settings = Settings(database_url=stack.database_url)
    found: dict[str, list[str]] = {}
    for service, checks in DUPLICATES.items():
        connection = await asyncpg.connect(settings.database_for(service).replace("+asyncpg", ""))
        try:
            for what, sql in checks.items():
                rows = await connection.fetch(sql + " LIMIT 20")
                if rows:
                    found[f"{service}: {what}"] = [str(r[0]) for r in rows]
        finally:
            await connection.close()
    return found


def audit_books(books: Books, sent: list[Message]) -> dict[str, Any]:
    """The checks, from what was sent and what the network said."""
    by_id = {m.id: m for m in sent}
    lost, doubled, wrong, misrouted = [], [], [], []
    for m in by_id.values():
        outcomes = books.outcomes.get(m.id, {})
        if not outcomes:
            lost.append(m.id)
            continue
        if len(outcomes) > 1:
            doubled.append(m.id)
        topic, data = next(iter(outcomes.values()))
        if topic != delivery_topic(m.answered_to):
            misrouted.append(m.id)
        got = (data.get("reason") or {}).get("code") if data["status"] == "rejected" else None
        if got != m.expected_code:
            wrong.append({"id": m.id, "malformed": m.malformed, "expected": m.expected_code or "accepted",
                          "got": got or data["status"]})

    accepted = [m for m in by_id.values() if not m.malformed and _status(books.outcomes.get(m.id)) == "accepted"]
    without_case = [m.id for m in accepted if not books.opened.get(m.id) and not books.added.get(m.id)]
    in_two_cases = [m.id for m in accepted if len(books.opened.get(m.id, {})) + len(books.added.get(m.id, {})) > 1]
    new_cases = books.new_cases()
    referral_missing, referral_doubled, notice_missing, notice_doubled = [], [], [], []
    for case_id, case in new_cases.items():
        referrals = books.referred.get(case_id, {})
        if not referrals:
            referral_missing.append(case_id)
        if len(referrals) > 1 or any(len(ids) > 1 for ids in referrals.values()):
            referral_doubled.append(case_id)
        expected = [(case["lead"], "referral-requested", case_id, r) for r in referrals]
        expected += [(who, "case-informed", case_id, None) for who in case["informed"]]
        for key in expected:
            ids = books.notices.get(key, set())
            (notice_missing if not ids else notice_doubled if len(ids) > 1 else []).append(list(key))
    # A report that joined a case: its lead is told once per report.
    joined: dict[tuple[str, str], int] = Counter()
    for versions in books.added.values():
        data = next(iter(versions.values()))
        joined[(data["lead"], data["case_id"])] += 1
    report_added_wrong = [{"case": case, "reports": n, "notices": len(books.notices.get((lead, "report-added", case, None), ()))}
                          for (lead, case), n in joined.items()
                          if len(books.notices.get((lead, "report-added", case, None), ())) != n]

    # Dead letters: each explained by a malformed message refused at the door, once.
    expected_letters = {m.id: m for m in by_id.values() if m.malformed and MALFORMATIONS[m.malformed].dead_letter}
    letters_of: dict[str, list[str]] = defaultdict(list)
    unexplained = []
    for letter_id, data in books.dead_letters.items():
        event_id = data.get("headers", {}).get("ce_id")
        m = expected_letters.get(event_id)
        if m is None or data["reason"]["code"] != m.expected_code or data["service"] != "intake":
            unexplained.append({"id": letter_id, "code": data["reason"]["code"], "service": data["service"],
                                "topic": data["topic"], "ce_id": event_id})
        else:
            letters_of[event_id].append(letter_id)
    return {
        "lost": lost, "doubled": doubled, "wrong_codes": wrong, "misrouted": misrouted,
        "accepted_without_case": without_case, "report_in_two_cases": in_two_cases,
        "new_cases": len(new_cases), "reports_joining_a_case": sum(joined.values()),
        "initial_referral_missing": referral_missing, "initial_referral_doubled": referral_doubled,
        "notice_missing": notice_missing, "notice_doubled": notice_doubled,
        "report_added_notices_wrong": report_added_wrong,
        "dead_letters": len(books.dead_letters),
        "dead_letters_expected": len(expected_letters),
        "dead_letters_missing": sorted(set(expected_letters) - set(letters_of)),
        "dead_letters_doubled": sorted(i for i, ls in letters_of.items() if len(ls) > 1),
        "dead_letters_unexplained": unexplained,
    }


FAILURES = ("lost", "doubled", "wrong_codes", "misrouted", "accepted_without_case", "report_in_two_cases",
            "initial_referral_missing", "initial_referral_doubled", "notice_missing", "notice_doubled",
            "report_added_notices_wrong", "dead_letters_missing", "dead_letters_doubled",
            "dead_letters_unexplained")


def balanced(summary: dict[str, Any]) -> bool:
    """Whether the books balance: nothing lost, doubled or wrong, no duplicate row, every
    fault of a round done, and the audit verified."""
    books = summary["books"]
    round_ = fault_round(Options(kill_kafka_broker=summary["options"].get("kill_kafka_broker", False)))
    return (not any(books[k] for k in FAILURES) and not summary["duplicate_rows"]
            and summary["audit"]["state"] == "verified" and not summary["audit"]["not_audited"]
            and not summary["audit"]["problems"] and all(summary["faults"]["count"].get(f) for f in round_))


async def run_on(stack: Stack, options: Options) -> dict[str, Any]:
    """The whole run on a started ``stack`` (supervised; on Apache Kafka, a cluster the
    stack was given, so that a killed node stays down until the bench starts it); the
    summary."""
    if options.kill_kafka_broker and stack.kafka is None:
        raise ValueError(f"{KAFKA_BROKER_KILL!r} needs the stack on Apache Kafka (--broker kafka): the embedded "
                         "broker is one process, paused here instead")
    load_at_start = os.getloadavg()[0]
    rng = random.Random(options.seed)
    sent = messages(stack, rng, options.reports, options.malformed)
    order = with_redeliveries(sent, rng, options.redeliveries)
    round_ = fault_round(options)
    targets = (KafkaTargets(stack.kafka, random.Random(options.seed + 2), busiest(order))
               if stack.kafka is not None else None)
    senders = Senders(stack)
    books = Books(stack.kafka_bootstrap or "", stack.kafka.admin_settings() if stack.kafka is not None else None)
    groups = stack_processes(stack)
    cpu_before = cpu_seconds(groups)
    operator = operator_token(stack.state, stack.url("identity"), ttl_seconds=24 * 3600)
    try:
        await senders.start({m.topic for m in order})
        await books.start()
        async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {operator}"}) as client:
            start = time.monotonic()
            chaos = Chaos(stack, client, random.Random(options.seed + 1), options.fault_every, start, options.rounds,
                          round_, targets)
            causing = asyncio.create_task(chaos.run())
            try:
                progress(f"sending {len(order)} messages at {options.rate:g}/s, a fault every "
                         f"~{options.fault_every:g} s ...")
                sending = await send(senders, order, options.rate, start)
                progress(f"{time.monotonic() - start:7.1f} s  all sent")
                sent_s = time.monotonic() - start
                chaos.sending_done.set()
                await causing
            finally:
                causing.cancel()
                await asyncio.gather(causing, return_exceptions=True)
                if stack.broker is not None:  # never leave it paused
                    faults.resume_broker(stack)
                for node in stack.kafka.nodes if stack.kafka is not None else ():
                    faults.resume_kafka_node(stack, node.node_id)
            faults_s = time.monotonic() - start
            progress(f"{time.monotonic() - start:7.1f} s  faults done; waiting for the network to be quiet ...")
            quiet = await wait_quiet(stack, client, books, sent, options.timeout)
            duration = time.monotonic() - start
            # Killed processes take their CPU time with them: only those that live through
            # the run are counted.
            cpu = {k: v - cpu_before[k] for k, v in cpu_seconds(groups).items() if k in ("broker", "bench")}
            stats = await service_stats(client, stack)
    finally:
        await books.stop()
        await senders.stop()
    checked = audit_books(books, sent)
    duplicates = await duplicate_rows(stack)
    verification = quiet["verification"]
    malformed_sent = Counter(m.malformed for m in sent if m.malformed)
    summary: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": machine(setup(stack)),
        "load_1min_at_start": load_at_start, "load_1min_at_end": os.getloadavg()[0],
        "options": asdict(options),
        "sent": {
            "reports": len(sent), "good": sum(1 for m in sent if not m.malformed),
            "malformed": sum(malformed_sent.values()), "malformed_by_kind": dict(malformed_sent),
            "redelivered": len(order) - len(sent), "messages": len(order), **sending,
        },
        "outcomes": {
            "reports_answered": sum(1 for m in sent if books.outcomes.get(m.id)),
            "accepted": sum(1 for m in sent if _status(books.outcomes.get(m.id)) == "accepted"),
            "rejected": sum(1 for m in sent if _status(books.outcomes.get(m.id)) == "rejected"),
            "lost": len(checked["lost"]), "doubled": len(checked["doubled"]),
            "wrong_codes": len(checked["wrong_codes"]),
        },
        "books": checked,
        "duplicate_rows": duplicates,
        "faults": {
            "done": [asdict(f) for f in chaos.done],
            "count": dict(Counter(f.what for f in chaos.done)),
            "recovery_s_max": max((f.recovered_after_s or 0 for f in chaos.done), default=0),
            "not_recovered": [f.what for f in chaos.done if f.recovered_after_s is None],
        },
        "supervision": stack.supervision(),
        "audit": {
            "state": verification.get("state"), "entries": verification.get("entries"),
            "not_audited": verification.get("not_audited"), "problems": verification.get("problems"),
            "tail_checked": verification.get("tail_checked"),
        },
        "dead_letters_by_service": {n: (s.get("dead_letters") or {}).get("total", 0) for n, s in stats.items()},
        "messages_read": books.received, "messages_read_again": books.repeated,
        "messages_read_again_by_topic": dict(books.repeated_on),
        "timing": {
            "sending_s": sent_s, "faults_s": faults_s, "quiet_wait_s": quiet["waited_s"],
            **{k: v for k, v in quiet.items() if k.endswith("_s") and k != "waited_s"},
            "duration_s": duration,
            "achieved_send_rate_per_s": len(order) / max(sent_s, 1e-9),
            "reports_per_s_until_quiet": len(sent) / duration,
        },
        "cpu_s": cpu,
    }
    summary["balanced"] = balanced(summary)
    return summary


def run(options: Options, state_dir: Path | None = None) -> dict[str, Any]:
    """Start a stack (supervised, in ``state_dir`` or a temporary folder; on Apache Kafka
    with a cluster of its own, given to the stack so that its supervisor leaves the nodes
    to the bench), run, stop it all."""
    with tempfile.TemporaryDirectory(prefix="punte-chaos-") as tmp:
        started = time.monotonic()
        with started_stack((state_dir or Path(tmp)) / "state", options.broker) as stack:
            startup = time.monotonic() - started
            summary = asyncio.run(run_on(stack, options))
            summary["timing"]["startup_s"] = startup
            return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Options()
    parser.add_argument("--reports", type=int, default=defaults.reports, help="reports to send (default 10000)")
    parser.add_argument("--rate", type=float, default=defaults.rate,
                        help=f"messages/s, redeliveries included (default {defaults.rate:g})")
    parser.add_argument("--fault-every", type=float, default=defaults.fault_every,
                        help=f"seconds between faults, ±50%% (default {defaults.fault_every:g})")
    parser.add_argument("--redeliveries", type=float, default=defaults.redeliveries,
                        help=f"share of reports sent again, byte for byte (default {defaults.redeliveries:g})")
    parser.add_argument("--malformed", type=float, default=defaults.malformed,
                        help=f"share of reports made malformed (default {defaults.malformed:g})")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of faults (each: every service killed, PostgreSQL crashed, the broker "
                             "paused); default: as long as the sending lasts")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="keep the stack's state (logs, databases) here; default: a temporary folder")
    parser.add_argument("--timeout", type=float, default=defaults.timeout,
                        help=f"seconds to wait for the network to be quiet (default {defaults.timeout:g})")
    parser.add_argument("--broker", choices=("tansu", "kafka"), default=defaults.broker,
                        help="tansu: the embedded default; kafka: a three-node Apache Kafka cluster of its own, "
                             "with the network's principals and ACLs (needs Java and `python -m punte.apache_kafka "
                             "fetch`)")
    parser.add_argument("--kill-kafka-broker", action="store_true",
                        help=f"with --broker kafka: each round also SIGKILLs one Kafka node and starts it again "
                             f"{KAFKA_DOWN_SECONDS:g} s later")
    args = parser.parse_args()
    options = Options(reports=args.reports, rate=args.rate, fault_every=args.fault_every,
                      redeliveries=args.redeliveries, malformed=args.malformed, seed=args.seed,
                      timeout=args.timeout, rounds=args.rounds, kill_kafka_broker=args.kill_kafka_broker,
                      broker=args.broker)
    if options.kill_kafka_broker and options.broker != "kafka":
        parser.error(f"{KAFKA_BROKER_KILL!r} needs --broker kafka: the embedded broker is one process "
                     "(it is paused instead; losing it is broker loss, decision 0026)")
    if options.broker == "kafka" and (reason := available()) is not None:
        parser.error(f"--broker kafka: {reason}")
    if args.state_dir is not None:
        args.state_dir.mkdir(parents=True, exist_ok=True)
    # The bench's own clients retry through every fault and say so, at WARNING and ERROR, a
    # line per request to a node that is down: the progress lines alone on stderr (what
    # cannot be retried is raised to the bench anyway).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # The stack's own log lines (a broker epoch claimed at start) on stderr too: stdout is the summary.
    configure_logging("bench.chaos")
    summary = run(options, args.state_dir)
    print(json.dumps(rounded(summary), ensure_ascii=False, separators=(",", ":")))
    return 0 if summary["balanced"] else 1


if __name__ == "__main__":
    sys.exit(main())
