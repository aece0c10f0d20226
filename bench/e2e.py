"""End-to-end benchmark of the whole network on one machine.

    python bench/e2e.py [--reports N] [--rates R1,R2] [--paced-reports M] [--seed S]
                        [--broker tansu|kafka] [--replicas K] [--idle-seconds T] [--pairs P]

Starts a fresh Stack (embedded PostgreSQL + Tansu broker, or a three-node Apache Kafka
cluster of its own with --broker kafka, + the four services) in a temporary folder, then
measures, in one run on the same machine:

0. idle CPU: every process of the stack, T seconds with no traffic, before any load;
1. throughput: N signed synthetic reports sent as fast as the producers allow, until every
   report has its outcome on its delivery topic, until every lead is notified and until the
   audit service has audited every message they caused; the RSS of each service meanwhile;
2. report-to-inbox latency: from each report's send to the arrival of the lead's
   "referral-requested" notification on its delivery topic, both for the saturating run
   above and for paced runs (M reports at each rate R, 20 and 100 reports/s by default);
3. baselines on the same broker and PostgreSQL: raw produce+consume and raw batched insert;
4. the reference pipeline (bench/reference.py) on the same broker and PostgreSQL, with the
   same reports' bytes: the network's throughput beside it, and the ratio. P pairs (3 by
   default) in turn: a saturated run of the network (the first is step 1's), then the
   reference with other N reports; the ratio is the median of the pairs', as this machine's
   speed drifts by a fifth from minute to minute;
5. with K > 1, a second fresh stack with K replicas of every service in their consumer
   groups, and its saturated run.

It prints figures and never asserts timings. The stacks are always stopped. See bench/README.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench import reference  # noqa: E402
from bench.figures import machine, rounded  # noqa: E402
from bench.stacks import Senders, setup, stack_settings, started_stack  # noqa: E402
from contracts.events import EventType  # noqa: E402
from contracts.reference import ingress_topic, institutions, topic_partitions  # noqa: E402
from punte.institution import fetch_intake_keys, sealed_report  # noqa: E402
from punte.stack import SERVICES, Stack, replica_names  # noqa: E402
from punte.status import operator_token  # noqa: E402
from punte.synthetic import reporters, synthetic_report  # noqa: E402
from runtime.cloudevents import CloudEvent, decode  # noqa: E402
from runtime.kafka import client_options, ensure_topics, make_consumer, make_producer  # noqa: E402
from runtime.settings import Settings  # noqa: E402

console = Console()
RAW_TOPIC = "bench.raw"  # not punte.*: the audit service does not read it
OUTCOME = EventType.OUTCOME.value
NOTIFICATION = EventType.CASE_NOTIFICATION.value
# What intake did with each accepted report, read from the network's own topic: a reporter
# that takes no part in the case is not told its id (issue #10).
CASE_EVENTS = {EventType.CASE_OPENED.value, EventType.CASE_REPORT_ADDED.value}
CASES_TOPIC = "punte.cases"


# --- what institutions receive ---------------------------------------------------------


@dataclass
class Deliveries:
    """Reads every delivery topic from "now on", like the institutions' own systems, and
    notes when each outcome and notification arrived (monotonic seconds); and punte.cases,
    for the case each accepted report opened or joined."""

    bootstrap: str
    settings: Settings | None = None  # every right on the stack's broker (stack_settings)
    outcomes: dict[str, tuple[float, dict]] = field(default_factory=dict)  # report id ->
    referred: dict[str, float] = field(default_factory=dict)  # case id -> arrival
    informed: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # case id -> n
    cases: dict[str, dict] = field(default_factory=dict)  # report id -> case.opened / report-added data
    received: int = 0
    _task: asyncio.Task | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **client_options(self.settings), bootstrap_servers=self.bootstrap, group_id=None, auto_offset_reset="latest",
            enable_auto_commit=False, metadata_max_age_ms=1000, fetch_max_bytes=16 << 20)
        self._consumer.subscribe(pattern=r"^punte\.(delivery\..+|cases)$")
        await self._consumer.start()
        # Sending before every delivery partition is assigned and positioned would lose
        # arrivals: wait for both.
        expected = sum(n for name, n in topic_partitions(institutions())
                       if name == CASES_TOPIC or name.startswith("punte.delivery."))
        deadline = time.monotonic() + 30
        while len(self._consumer.assignment()) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self._consumer.assignment())}/{expected} "
                                   "delivery partitions assigned")
            await asyncio.sleep(0.1)
        for tp in self._consumer.assignment():
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    self.received += 1
                    event = decode(record.headers, record.value)
                    if event.type in CASE_EVENTS:
                        self.cases.setdefault(event.data["report_id"], event.data)
                    elif event.type == OUTCOME:
                        self.outcomes.setdefault(event.data["subject_id"], (now, event.data))
                    elif event.type == NOTIFICATION:
                        case_id, kind = event.data["case_id"], event.data["kind"]
                        if kind == "referral-requested":
                            self.referred.setdefault(case_id, now)
                        elif kind == "case-informed":
                            self.informed[case_id] += 1

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


async def wait_for(check, what: str, timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout}s: {what}")
        await asyncio.sleep(every)


# --- service figures and CPU ------------------------------------------------------------


def collector_seconds(stats: dict[str, dict]) -> dict[str, float]:
    """Seconds each service spent in Python's garbage collector since it started (/stats)."""
    return {name: sum(s["collector"]["seconds"]) for name, s in stats.items() if "collector" in s}


async def service_stats(client: httpx.AsyncClient, stack: Stack) -> dict[str, dict]:
    answers = await asyncio.gather(*(client.get(stack.url(n) + "/stats") for n in SERVICES),
                                   return_exceptions=True)
    return {n: a.json() for n, a in zip(SERVICES, answers, strict=True) if isinstance(a, httpx.Response)}


def processed(stats: dict) -> int:
    return sum(c["processed"] + c["duplicates"] for c in stats.get("consumers", []))


class Sampler:
    """Samples every service's /stats once a second during a run, to see which stage
    finished when and where the outbox backlog piled up; and the RSS of every component
    (``groups``), for its maximum."""

    def __init__(self, stack: Stack, client: httpx.AsyncClient, start: float, groups: dict[str, list]) -> None:
        self.stack, self.client, self.start, self.groups = stack, client, start, groups
        self.samples: list[tuple[float, dict[str, dict]]] = []
        self.max_rss: dict[str, int] = dict.fromkeys(groups, 0)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for name, rss in group_rss(self.groups).items():
                self.max_rss[name] = max(self.max_rss[name], rss)
            try:
                self.samples.append((time.monotonic() - self.start,
                                     await service_stats(self.client, self.stack)))
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def summary(self, final: dict[str, dict]) -> dict[str, dict]:
        out = {}
        for name in SERVICES:
            done = processed(final.get(name, {}))
            series = [(t, s[name]) for t, s in self.samples if name in s]
            finished = next((t for t, s in series if processed(s) >= done), None)
            out[name] = {
                "consumed": done,
                "finished_s": finished,  # first 1 s sample showing all of its final count
                "max_outbox_pending": max((s["outbox"]["pending"] or 0 for _, s in series), default=0),
                # Persisted counts (every path, across restarts), not the consumers' counters.
                "dead_lettered": (final.get(name, {}).get("dead_letters") or {}).get("total", 0),
            }
        return out


def stack_processes(stack: Stack) -> dict[str, list]:
    """Every process of the stack by component: each service (all of its replicas), the
    token issuer and the mail server, the broker (Tansu, or every Apache Kafka node),
    PostgreSQL, and the bench itself. A component's children are counted with it, listed
    afresh at each reading (PostgreSQL's backends come and go)."""
    def of(*processes: Any) -> list:
        return [psutil.Process(p.pid) for p in processes if p is not None]

    groups: dict[str, list] = {
        name: of(*(stack.processes.get(r) for r in replica_names(name, stack.replicas)))
        for name in (*SERVICES, "identity", "mail")}
    if stack.broker is not None:
        groups["broker"] = of(stack.broker.process)
    elif stack.kafka is not None:
        groups["broker"] = of(*(node.process for node in stack.kafka.nodes))
    if stack.postgres is not None:
        groups["postgres"] = of(stack.postgres.process)
    groups["bench"] = [psutil.Process(os.getpid())]
    return {name: procs for name, procs in groups.items() if procs}


def members(name: str, procs: list) -> list:
    """A component's processes and their children (not the bench's: the reference
    pipeline's stages are counted on their own)."""
    out = list(procs)
    if name != "bench":
        for p in procs:
            try:
                out += p.children(recursive=True)
            except psutil.Error:
                pass
    return out


def cpu_seconds(groups: dict[str, list]) -> dict[str, float]:
    out = {}
    for name, procs in groups.items():
        total = 0.0
        for p in members(name, procs):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        out[name] = total
    return out


def group_rss(groups: dict[str, list]) -> dict[str, int]:
    """Resident memory (bytes) of each component, its processes and their children."""
    out = {}
    for name, procs in groups.items():
        total = 0
        for p in members(name, procs):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        out[name] = total
    return out


def core_percent(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """CPU seconds used between two readings as % of one core, per component, and their
    ``total`` without the bench."""
    used = {k: max(0.0, after[k] - before.get(k, 0.0)) * 100 / seconds for k in after}
    return {**used, "total": sum(v for k, v in used.items() if k != "bench")}


async def idle_cpu(stack: Stack, seconds: float) -> dict[str, float]:
    """% of one core each component of the stack uses with no traffic at all."""
    groups = stack_processes(stack)
    before, start = cpu_seconds(groups), time.monotonic()
    await asyncio.sleep(seconds)
    return core_percent(before, cpu_seconds(groups), time.monotonic() - start)


# --- the runs ----------------------------------------------------------------------------


def make_reports(stack: Stack, rng: random.Random, n: int) -> list[tuple[str, CloudEvent]]:
    """Signed reports, sealed to intake's published keys as the institutions seal them (v3)."""
    keys = {i: stack.state.institution_key(i) for i in reporters()}
    intake_keys = fetch_intake_keys(stack.url("intake"))
    out = []
    for _ in range(n):
        reporter = rng.choice(list(keys))
        event_id = str(uuid.uuid4())
        event = CloudEvent.new(EventType.REPORT_SUBMITTED_V3.value, f"/institutions/{reporter}",
                               sealed_report(synthetic_report(rng, reporter), event_id, intake_keys), id=event_id)
        out.append((reporter, keys[reporter].sign(event)))
    return out


def audit_expected(outcome: dict, case: dict | None) -> int:
    """Audit entries one report causes: its ingress message, its outcome, case.opened,
    referral.requested, the lead's referral-requested notification and one case-informed
    notification per institution informed (``case``: its case.opened; a report that joined
    a case, case.report-added, informs no one new)."""
    if outcome.get("status") != "accepted":
        return 2  # ingress + rejection outcome (a dead letter would add one more)
    return 5 + len((case or {}).get("informed", []))


async def cases_of(deliveries: Deliveries, ids: list[str], timeout: float) -> dict[str, str | None]:
    """Report id -> the case it opened or joined (None: rejected), once punte.cases says."""
    accepted = [i for i in ids if deliveries.outcomes[i][1].get("status") == "accepted"]
    await wait_for(lambda: all(i in deliveries.cases for i in accepted), "every case on punte.cases", timeout)
    return {i: deliveries.cases[i]["case_id"] if i in deliveries.cases else None for i in ids}


async def send_all(senders: Senders, reports, sent_at: dict[str, float], rate: float | None) -> float:
    """Sends without awaiting each, each report by its institution's producer; paced at
    `rate` per second when given."""
    start = time.monotonic()
    futures = []
    for i, (reporter, event) in enumerate(reports):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        sent_at[event.id] = time.monotonic()
        futures.append(await senders.for_topic(ingress_topic(reporter)).send(
            ingress_topic(reporter), value=event.body(), key=event.id.encode(),
            headers=event.headers()))
    await asyncio.gather(*futures)
    return start


def percentiles(values_s: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values_s)
    if not ms:
        return {}

    def pick(q: float) -> float:
        return ms[min(len(ms) - 1, max(0, round(q * len(ms)) - 1))]
    return {"n": len(ms), "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99),
            "max_ms": ms[-1], "mean_ms": statistics.fmean(ms)}


# The audit log's own checkpoints (every PUNTE_AUDIT_CHECKPOINT_SECONDS while it grows) are
# audited too; they are not caused by reports, so they are not counted here.
NOT_FROM_REPORTS = ("ro.punte.audit.checkpoint.v1",)


async def audited_total(client: httpx.AsyncClient, stack: Stack) -> int:
    counts = (await client.get(stack.url("audit") + "/stats")).json()["counts"]
    return int(counts["audit_entries"]) - sum(counts["by_type"].get(t, 0) for t in NOT_FROM_REPORTS)


async def wait_audited(client, stack, expected: int, timeout: float) -> tuple[float, int]:
    """Polls the audit count until it reaches `expected` and then stops growing; returns
    when it first reached it and the settled count."""
    deadline = time.monotonic() + timeout
    reached: float | None = None
    last, steady = -1, 0
    while True:
        count = await audited_total(client, stack)
        now = time.monotonic()
        if count >= expected and reached is None:
            reached = now
        steady = steady + 1 if count == last else 0
        last = count
        if reached is not None and steady >= 4:  # ~1 s without growth
            return reached, count
        if now > deadline:
            raise TimeoutError(f"audit has {count} entries, expected {expected}")
        await asyncio.sleep(0.25)


async def saturated_run(stack, senders, deliveries, client, reports, timeout) -> dict[str, Any]:
    sent_at: dict[str, float] = {}
    groups = stack_processes(stack)
    cpu_before = cpu_seconds(groups)
    collected_before = collector_seconds(await service_stats(client, stack))
    start = time.monotonic()
    sampler = Sampler(stack, client, start, groups)
    await send_all(senders, reports, sent_at, rate=None)
    sent_done = time.monotonic()
    ids = [e.id for _, e in reports]
    await wait_for(lambda: all(i in deliveries.outcomes for i in ids), "every report answered", timeout)
    answered = max(deliveries.outcomes[i][0] for i in ids)
    outcomes = [deliveries.outcomes[i][1] for i in ids]
    case_of = await cases_of(deliveries, ids, timeout)
    expected = sum(audit_expected(o, deliveries.cases.get(i)) for i, o in zip(ids, outcomes, strict=True))
    await wait_for(lambda: all(c in deliveries.referred for c in case_of.values() if c),
                   "every lead notified", timeout)
    notified = max(deliveries.referred[c] for c in case_of.values() if c)
    reached, settled = await wait_audited(client, stack, expected, timeout)
    cpu_after = cpu_seconds(groups)
    await sampler.stop()
    final = await service_stats(client, stack)
    n = len(reports)
    latencies = [deliveries.referred[case_of[i]] - sent_at[i] for i in ids if case_of[i]]
    answer_lat = [deliveries.outcomes[i][0] - sent_at[i] for i in ids]
    return {
        "reports": n,
        "accepted": sum(o.get("status") == "accepted" for o in outcomes),
        "send_s": sent_done - start,
        "answered_s": answered - start,
        "audited_s": reached - start,
        "reports_per_s_answered": n / (answered - start),
        "notified_s": notified - start,
        "reports_per_s_notified": n / (notified - start),
        "reports_per_s_audited": n / (reached - start),
        "audit_entries_expected": expected,
        "audit_entries_settled": settled,
        "messages_per_report": expected / n,
        "latency_report_to_inbox": percentiles(latencies),
        "latency_report_to_outcome": percentiles(answer_lat),
        "stages": sampler.summary(final),
        "cpu_s": {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after},
        "gc_s": {k: round(v - collected_before.get(k, 0.0), 2) for k, v in collector_seconds(final).items()},
        "max_rss_mb": {k: v / 2**20 for k, v in sampler.max_rss.items()},
    }


async def paced_run(stack, senders, deliveries, client, reports, rate, audit_so_far, timeout):
    sent_at: dict[str, float] = {}
    start = await send_all(senders, reports, sent_at, rate=rate)
    ids = [e.id for _, e in reports]
    await wait_for(lambda: all(i in deliveries.outcomes for i in ids), "every paced report answered", timeout)
    case_of = await cases_of(deliveries, ids, timeout)
    await wait_for(lambda: all(c in deliveries.referred for c in case_of.values() if c),
                   "every paced lead notified", timeout)
    done = max(deliveries.referred[c] for c in case_of.values() if c)
    expected = audit_so_far + sum(audit_expected(deliveries.outcomes[i][1], deliveries.cases.get(i)) for i in ids)
    _, settled = await wait_audited(client, stack, expected, timeout)  # quiet before baselines
    return {
        "reports": len(reports), "rate_per_s": rate,
        "achieved_rate_per_s": len(reports) / max(max(sent_at.values()) - start, 1e-9),
        "wall_s": done - start,
        "latency_report_to_inbox": percentiles(
            [deliveries.referred[case_of[i]] - sent_at[i] for i in ids if case_of[i]]),
        "latency_report_to_outcome": percentiles(
            [deliveries.outcomes[i][0] - sent_at[i] for i in ids]),
        "audit_entries_expected": expected, "audit_entries_settled": settled,
    }


async def raw_broker(bootstrap: str, reports: list[tuple[str, CloudEvent]], timeout: float,
                     settings: Settings | None = None, replication: int = 1) -> dict:
    """Produce N messages the size of a report (its own bytes and headers) to one topic
    and read them back; produce and consume overlap, as in the network."""
    await ensure_topics(bootstrap, [(RAW_TOPIC, 1)], replication, settings=settings)
    consumer = AIOKafkaConsumer(**client_options(settings), bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_bytes=16 << 20)
    await consumer.start()
    tp = TopicPartition(RAW_TOPIC, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    producer = make_producer(bootstrap, settings)
    await producer.start()
    n = len(reports)
    got = 0

    async def read() -> None:
        nonlocal got
        while got < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=10000)
            got += sum(len(r) for r in batch.values())
    try:
        reader = asyncio.create_task(read())
        start = time.monotonic()
        futures = [await producer.send(RAW_TOPIC, value=e.body(), key=e.id.encode(),
                                       headers=e.headers()) for _, e in reports]
        await asyncio.gather(*futures)
        produced = time.monotonic()
        await asyncio.wait_for(reader, timeout)
        consumed = time.monotonic()
    finally:
        await producer.stop()
        await consumer.stop()
    return {"messages": n, "bytes_per_message": statistics.fmean(
                len(e.body()) + sum(len(k) + len(v) for k, v in e.headers()) for _, e in reports),
            "produce_per_s": n / (produced - start), "messages_per_s": n / (consumed - start)}


async def raw_hop_latency(bootstrap: str, reports, rate: float, count: int, settings: Settings | None = None,
                          replication: int = 1) -> dict:
    """One broker hop at the paced rate: produce -> a consumer configured as the services'
    are (runtime.kafka.make_consumer) sees it. The floor under each of the hops a report
    makes on its way to an inbox."""
    topic = RAW_TOPIC + ".hop"
    await ensure_topics(bootstrap, [(topic, 1)], replication, settings=settings)
    consumer = make_consumer(bootstrap, None, 1000, settings)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    producer = make_producer(bootstrap, settings)
    await producer.start()
    sent: dict[bytes, float] = {}
    seen: list[float] = []

    async def read() -> None:
        while len(seen) < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=1000)
            now = time.monotonic()
            seen.extend(now - sent[r.key] for rs in batch.values() for r in rs)
    try:
        reader = asyncio.create_task(read())
        start = time.monotonic()
        futures = []
        for i, (_, e) in enumerate(reports[:count]):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[e.id.encode()] = time.monotonic()
            futures.append(await producer.send(topic, value=e.body(), key=e.id.encode(),
                                               headers=e.headers()))
        await asyncio.gather(*futures)
        await asyncio.wait_for(reader, 60)
    finally:
        await producer.stop()
        await consumer.stop()
    return {"rate_per_s": rate, **percentiles(seen)}


async def raw_insert(database_url: str, reports: list[tuple[str, CloudEvent]]) -> dict:
    """N outbox-like rows (topic, key, headers, payload) into a scratch table, batched."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    rows = [(ingress_topic(r), e.id.encode(), json.dumps([(k, v.decode()) for k, v in e.headers()]),
             e.body(), e.type) for r, e in reports]
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_scratch")
        await conn.execute("CREATE TABLE bench_scratch (id bigserial PRIMARY KEY, topic text, key bytea, "
                           "headers jsonb, payload bytea, event_type text, "
                           "created_at timestamptz NOT NULL DEFAULT now())")
        start = time.monotonic()
        async with conn.transaction():
            await conn.executemany("INSERT INTO bench_scratch (topic, key, headers, payload, event_type) "
                                   "VALUES ($1, $2, $3::jsonb, $4, $5)", rows)
        executemany_s = time.monotonic() - start
        await conn.execute("TRUNCATE bench_scratch")
        start = time.monotonic()
        await conn.copy_records_to_table(
            "bench_scratch", records=rows, columns=["topic", "key", "headers", "payload", "event_type"])
        copy_s = time.monotonic() - start
        await conn.execute("DROP TABLE bench_scratch")
    finally:
        await conn.close()
    n = len(rows)
    return {"rows": n, "executemany_rows_per_s": n / executemany_s, "copy_rows_per_s": n / copy_s}


# --- output ------------------------------------------------------------------------------


def show(figures: dict) -> None:
    sat, broker, insert = figures["saturated"], figures["raw_broker"], figures["raw_insert"]
    console.print(f"[bold]Machine:[/bold] {figures['machine']}")
    console.print(f"stack start-up: {figures['startup_s']:.1f} s; 1-min load average before the "
                  f"run: {figures['load_1min_at_start']:.2f} (anything else busy skews every figure)\n")

    idle = figures["idle_cpu"]
    t = Table(title=f"0. Idle network: % of one core over {figures['idle_seconds']:g} s with no traffic, before the load")
    t.add_column("component")
    t.add_column("% of one core", justify="right")
    for name, value in idle.items():
        label = "[bold]whole network (all but the bench)[/bold]" if name == "total" else name
        t.add_row(label, f"[bold]{value:.1f}[/bold]" if name == "total" else f"{value:.1f}")
    console.print(t)

    t = Table(title=f"1. End-to-end throughput ({sat['reports']} reports sent as fast as possible)")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("all reports handed to the broker after", f"{sat['send_s']:.2f} s")
    t.add_row("every report answered (outcome on its delivery topic) after", f"{sat['answered_s']:.2f} s")
    t.add_row("[bold]reports/s until answered[/bold]", f"[bold]{sat['reports_per_s_answered']:.1f}[/bold]")
    t.add_row("every lead notified (the last stage) after", f"{sat['notified_s']:.2f} s")
    t.add_row("[bold]reports/s until the last stage[/bold]", f"[bold]{sat['reports_per_s_notified']:.1f}[/bold]")
    t.add_row("everything audited after", f"{sat['audited_s']:.2f} s")
    t.add_row("[bold]reports/s until audited[/bold]", f"[bold]{sat['reports_per_s_audited']:.1f}[/bold]")
    t.add_row("audit entries expected / settled",
              f"{sat['audit_entries_expected']} / {sat['audit_entries_settled']}")
    t.add_row("messages on topics per report", f"{sat['messages_per_report']:.2f}")
    t.add_row("reports accepted", f"{sat['accepted']} / {sat['reports']}")
    console.print(t)

    t = Table(title="Where the saturated run's time went (service /stats and RSS sampled every 1 s; CPU from /proc)")
    for col in ("component", "messages consumed", "caught up after", "max outbox pending", "dead-lettered", "CPU s",
                "of it in GC s", "max RSS MB"):
        t.add_column(col, justify="right" if col != "component" else "left")
    for name in sat["cpu_s"]:
        stage = sat["stages"].get(name)
        cpu, rss, collected = sat["cpu_s"].get(name), sat["max_rss_mb"].get(name), sat["gc_s"].get(name)
        t.add_row(name, str(stage["consumed"]) if stage else "",
                  (f"{stage['finished_s']:.0f} s" if stage and stage["finished_s"] is not None else ""),
                  str(stage["max_outbox_pending"]) if stage else "",
                  str(stage["dead_lettered"]) if stage else "",
                  f"{cpu:.1f}" if cpu is not None else "n/a", f"{collected:.2f}" if collected is not None else "",
                  f"{rss:.0f}" if rss is not None else "n/a")
    console.print(t)

    t = Table(title="2. Report-to-inbox latency (send -> lead's referral-requested notification)")
    for col in ("run", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "outcome p50 ms"):
        t.add_column(col, justify="right" if col != "run" else "left")
    runs = [(f"saturated ({sat['reports']} at once)", sat),
            *((f"paced ({p['reports']} at {p['rate_per_s']:g}/s)", p) for p in figures["paced"])]
    for label, run in runs:
        lat, out = run["latency_report_to_inbox"], run["latency_report_to_outcome"]
        t.add_row(label, str(lat["n"]), f"{lat['p50_ms']:.0f}", f"{lat['p90_ms']:.0f}",
                  f"{lat['p99_ms']:.0f}", f"{lat['max_ms']:.0f}", f"{out['p50_ms']:.0f}")
    console.print(t)

    t = Table(title="3. Baselines on the same broker and PostgreSQL")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row(f"raw broker: produce+consume {broker['messages']} msgs of ~{broker['bytes_per_message']:.0f} B",
              f"{broker['messages_per_s']:.0f} msgs/s")
    t.add_row("raw broker: produce only (all acked)", f"{broker['produce_per_s']:.0f} msgs/s")
    hop = figures["raw_hop_latency"]
    t.add_row(f"raw broker: one hop at {hop['rate_per_s']:g}/s, produce -> consumer with the "
              "services' settings (p50 / p90 / max)",
              f"{hop['p50_ms']:.0f} / {hop['p90_ms']:.0f} / {hop['max_ms']:.0f} ms")
    t.add_row(f"raw insert: asyncpg executemany, {insert['rows']} rows, one transaction",
              f"{insert['executemany_rows_per_s']:.0f} rows/s")
    t.add_row("raw insert: asyncpg copy_records_to_table", f"{insert['copy_rows_per_s']:.0f} rows/s")
    console.print(t)

    ref, vs = figures["reference"], figures["vs_reference"]
    pairs = figures["pairs"]

    def middle(key: str) -> float:
        return statistics.median(p[key] for p in pairs)
    t = Table(title=f"4. The network beside the reference pipeline (bench/reference.py), {ref['reports']} reports at "
                    f"once, same broker and PostgreSQL, same run; {len(pairs)} pair(s) in turn, medians")
    for col in ("reports/s", "network", "reference", "network ÷ reference"):
        t.add_column(col, justify="right" if col != "reports/s" else "left")
    t.add_row("until the last stage (lead notified)", f"{middle('network_last_stage'):.1f}",
              f"{middle('reference_last_stage'):.1f}", f"[bold]{vs['last_stage']:.3f}[/bold]")
    t.add_row("until audited", f"{middle('network_audited'):.1f}", f"{middle('reference_audited'):.1f}",
              f"[bold]{vs['audited']:.3f}[/bold]")
    t.add_row("messages per report (the first pair)", f"{sat['messages_per_report']:.2f}",
              f"{ref['messages_per_report']}", "")
    t.add_row("CPU s of the four stages (the first pair)", f"{sum(sat['cpu_s'].get(n, 0) for n in SERVICES):.1f}",
              f"{sum(ref['cpu_s'].get(n, 0) for n in reference.STAGES):.1f}", "")
    for name in ("broker", "postgres"):
        t.add_row(f"CPU s of {name} (the first pair)", f"{sat['cpu_s'].get(name, 0):.1f}",
                  f"{ref['cpu_s'].get(name, 0):.1f}", "")
    console.print(t)
    if len(pairs) > 1:
        t = Table(title="4b. Each pair: the network's saturated run, then the reference's (audited reports/s)")
        for col in ("pair", "network", "reference", "network ÷ reference"):
            t.add_column(col, justify="right")
        for number, p in enumerate(pairs, start=1):
            t.add_row(str(number), f"{p['network_audited']:.1f}", f"{p['reference_audited']:.1f}",
                      f"{p['ratio_audited']:.3f}")
        console.print(t)

    rep = figures.get("replicas")
    if rep:
        t = Table(title=f"5. Scale-out: {rep['replicas']} replicas of every service (a second fresh stack, "
                        f"{rep['saturated']['reports']} reports at once)")
        for col in ("reports/s", "1 replica", f"{rep['replicas']} replicas", "ratio"):
            t.add_column(col, justify="right" if col != "reports/s" else "left")
        for label, key in (("until answered", "reports_per_s_answered"), ("until the last stage", "reports_per_s_notified"),
                           ("until audited", "reports_per_s_audited")):
            one, many = sat[key], rep["saturated"][key]
            t.add_row(label, f"{one:.1f}", f"{many:.1f}", f"{many / one:.2f}")
        console.print(t)

    r = figures["ratios"]
    t = Table(title="Ratios (end-to-end reports/s ÷ baseline)")
    t.add_column("ratio")
    t.add_column("value", justify="right")
    t.add_column("what it means")
    mpr = sat["messages_per_report"]
    t.add_row("answered ÷ raw broker msgs/s", f"{r['answered_vs_broker']:.3f}",
              f"each report becomes ~{mpr:.1f} messages, each read by 1-3 consumers across 4 services "
              "and re-published via an outbox, so the broker alone would carry far more")
    t.add_row("audited ÷ raw broker msgs/s", f"{r['audited_vs_broker']:.3f}", "same, until the audit trail holds every message")
    t.add_row("answered ÷ raw insert rows/s (executemany)", f"{r['answered_vs_insert']:.3f}",
              "each report costs several consumer transactions (inbox + domain + outbox rows, "
              "then a relay update), not one batched insert")
    t.add_row("audited ÷ raw insert rows/s (executemany)", f"{r['audited_vs_insert']:.3f}",
              f"audit writes ~{mpr:.1f} hash-chained rows per report, each reading the previous one")
    console.print(t)


def replication(stack: Stack) -> int:
    """Replicas of the bench's own topics: as the network's on the stack's broker."""
    return 3 if stack.kafka is not None else 1


class Network:
    """The bench's clients of a started stack: the institutions' producers, the observer of
    the delivery topics, and an operator's HTTP client (/stats is the operator's to read).
    Entered again, it connects again and its observer keeps what it saw."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.senders = Senders(stack)
        self.deliveries = Deliveries(stack.kafka_bootstrap or "", stack_settings(stack))

    async def __aenter__(self) -> "Network":
        await self.senders.start({ingress_topic(r) for r in reporters()})
        await self.deliveries.start()
        operator = operator_token(self.stack.state, self.stack.url("identity"), ttl_seconds=24 * 3600)
        self.client = httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {operator}"})
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.client.aclose()
        await self.deliveries.stop()
        await self.senders.stop()


@contextmanager
def services_paused(stack: Stack) -> Iterator[None]:
    """Every service process stopped (SIGSTOP, its whole process group) and then continued:
    the reference pipeline has the broker and PostgreSQL to itself, as the network had them
    during its own runs, rather than sharing them with the idle network's polling."""
    groups = [p.pid for n, p in stack.processes.items() if n in stack.service_processes and p.poll() is None]
    for pid in groups:
        os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in groups:
            os.killpg(pid, signal.SIGCONT)


async def bench(stack: Stack, args, startup_s: float) -> dict:
    console.print(f"idle network: {args.idle_seconds:g} s with no traffic ...")
    idle = await idle_cpu(stack, args.idle_seconds)
    rng = random.Random(args.seed)
    reports = make_reports(stack, rng, args.reports)
    paced_sets = [(rate, make_reports(stack, rng, args.paced_reports)) for rate in args.rate]
    # Fresh reports for each further pair: a report sent twice would be a duplicate.
    more = [make_reports(stack, rng, args.reports) for _ in range(args.pairs - 1)]
    # One observer for every run: a later report that joins a case opened earlier is
    # notified as that case was.
    net = Network(stack)
    async with net:
        console.print(f"saturated run: {args.reports} reports ...")
        saturated = await saturated_run(stack, net.senders, net.deliveries, net.client, reports, args.timeout)
        paced, audited = [], saturated["audit_entries_settled"]
        for rate, paced_reports in paced_sets:
            console.print(f"paced run: {args.paced_reports} reports at {rate:g}/s ...")
            paced.append(await paced_run(stack, net.senders, net.deliveries, net.client, paced_reports, rate,
                                         audited, args.timeout))
            audited = paced[-1]["audit_entries_settled"]
    settings, copies = stack_settings(stack), replication(stack)
    assert stack.kafka_bootstrap and stack.database_url
    console.print("baselines ...")
    broker = await raw_broker(stack.kafka_bootstrap, reports, args.timeout, settings, copies)
    hop_rate = min(args.rate)
    hop = await raw_hop_latency(stack.kafka_bootstrap, reports, hop_rate,
                                min(len(reports), max(20, int(hop_rate * 5))), settings, copies)
    insert = await raw_insert(stack.database_url, reports)
    ref = await reference_run(stack, reports, args, settings, copies)
    pairs = [pair_of(saturated, ref)]
    for number, further in enumerate(more, start=2):
        async with net:
            console.print(f"pair {number} of {args.pairs}: the saturated run again, {args.reports} new reports ...")
            again = await saturated_run(stack, net.senders, net.deliveries, net.client, further, args.timeout)
        pairs.append(pair_of(again, await reference_run(stack, further, args, settings, copies)))
    return {
        "date": date.today().isoformat(),
        "machine": machine(setup(stack)), "broker": args.broker,
        "cores": os.cpu_count(), "python": sys.version.split()[0],
        "startup_s": startup_s, "load_1min_at_start": args.load_at_start,
        "idle_seconds": args.idle_seconds, "idle_cpu": idle,
        "saturated": saturated, "paced": paced, "raw_broker": broker, "raw_hop_latency": hop, "raw_insert": insert,
        "reference": ref, "pairs": pairs,
        "vs_reference": {"last_stage": statistics.median(p["ratio_last_stage"] for p in pairs),
                         "audited": statistics.median(p["ratio_audited"] for p in pairs)},
        "ratios": {
            "answered_vs_broker": saturated["reports_per_s_answered"] / broker["messages_per_s"],
            "audited_vs_broker": saturated["reports_per_s_audited"] / broker["messages_per_s"],
            "answered_vs_insert": saturated["reports_per_s_answered"] / insert["executemany_rows_per_s"],
            "audited_vs_insert": saturated["reports_per_s_audited"] / insert["executemany_rows_per_s"],
            "answered_vs_copy": saturated["reports_per_s_answered"] / insert["copy_rows_per_s"],
        },
    }


async def reference_run(stack: Stack, reports: list, args, settings: Settings | None, copies: int) -> dict:
    """The reference pipeline on the stack's broker and PostgreSQL with ``reports``, the
    network's services paused."""
    assert stack.kafka_bootstrap and stack.database_url
    console.print(f"reference pipeline: {len(reports)} reports, the network's services paused ...")
    groups = {k: v for k, v in stack_processes(stack).items() if k in ("broker", "postgres")}
    with services_paused(stack):
        return await reference.run(
            stack.kafka_bootstrap, stack.database_url, settings,
            reference.reports_from((r, e.id, e.body(), e.headers()) for r, e in reports),
            reference.network_institutions(), copies, args.timeout, lambda: cpu_seconds(groups))


def pair_of(network: dict, ref: dict) -> dict:
    """One saturated run of the network and the reference run after it: each one's reports/s
    and their ratios. The machine's speed drifts from minute to minute (a fifth either way
    on this one), so the ratio is taken pair by pair, each pair minutes apart at most."""
    return {"network_audited": network["reports_per_s_audited"], "reference_audited": ref["reports_per_s_audited"],
            "network_last_stage": network["reports_per_s_notified"],
            "reference_last_stage": ref["reports_per_s_last_stage"],
            "ratio_audited": network["reports_per_s_audited"] / ref["reports_per_s_audited"],
            "ratio_last_stage": network["reports_per_s_notified"] / ref["reports_per_s_last_stage"]}


async def replicas_bench(stack: Stack, args, startup_s: float) -> dict:
    """The saturated run again, on a fresh stack with ``stack.replicas`` processes per service."""
    reports = make_reports(stack, random.Random(args.seed), args.reports)
    async with Network(stack) as net:
        console.print(f"saturated run with {stack.replicas} replicas of every service: {args.reports} reports ...")
        saturated = await saturated_run(stack, net.senders, net.deliveries, net.client, reports, args.timeout)
    # A replica's /stats shows its own consumers only: the stages' summary would be half of it.
    saturated.pop("stages")
    return {"replicas": stack.replicas, "startup_s": startup_s, "load_1min_at_start": os.getloadavg()[0],
            "saturated": saturated}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=1000, help="reports in the saturated run (default 1000)")
    parser.add_argument("--rate", type=float, action="append", default=None,
                        help="reports/s of a paced run; repeat for several (default 20 and 100)")
    parser.add_argument("--paced-reports", type=int, default=200, help="reports in each paced run (default 200)")
    parser.add_argument("--pairs", type=int, default=3,
                        help="saturated runs of the network, each followed by a run of the reference pipeline; "
                             "the ratio printed is the median of the pairs' (default 3)")
    parser.add_argument("--idle-seconds", type=float, default=20.0,
                        help="how long the idle network's CPU is measured before the load (default 20)")
    parser.add_argument("--replicas", type=int, default=2,
                        help="replicas of every service in the scale-out run on a second stack (default 2; 1: no such run)")
    parser.add_argument("--broker", choices=("tansu", "kafka"), default="tansu",
                        help="tansu: the embedded default; kafka: a three-node Apache Kafka cluster of its own, with "
                             "the network's principals and ACLs (needs Java and `python -m punte.apache_kafka fetch`)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=600, help="give up waiting after this many s")
    parser.add_argument("--keep-logs", type=Path, default=None,
                        help="copy the stacks' logs/ here before the temporary folder goes")
    args = parser.parse_args()
    args.rate = args.rate or [20.0, 100.0]
    if args.broker == "kafka":
        from punte.apache_kafka import available
        if (reason := available()) is not None:
            parser.error(f"--broker kafka: {reason}")
    if args.pairs < 1:
        parser.error("--pairs: at least 1")
    args.load_at_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="punte-bench-") as tmp:
        runs = [("state", 1, bench)] + ([("replicas", args.replicas, replicas_bench)] if args.replicas > 1 else [])
        figures: dict[str, Any] = {}
        for folder, replicas, measure in runs:
            root = Path(tmp) / folder
            console.print(f"starting a fresh stack in {root} ({replicas} replica(s) of every service) ...")
            started = time.monotonic()
            try:
                with started_stack(root, args.broker, replicas=replicas) as stack:
                    figures_of_run = asyncio.run(measure(stack, args, time.monotonic() - started))
            finally:
                if args.keep_logs:
                    import shutil
                    shutil.copytree(root / "logs", args.keep_logs / folder, dirs_exist_ok=True)
            if replicas == 1:
                figures = figures_of_run
            else:
                figures["replicas"] = figures_of_run
    show(figures)
    print(json.dumps(rounded(figures), ensure_ascii=False, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
