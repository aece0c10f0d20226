"""A service's Prometheus metrics (GET /metrics): what an operator is alerted on when the
network stops keeping its promises (deploy/prometheus/alerts.yaml, decision 0037) and what
the Grafana dashboard shows (deploy/grafana/dashboards/punte.json): consumers stopped by a
failure limit (decision 0022), lagging or no longer polling; outbox rows late or parked
(0021); dead letters; a broker with no epoch (0026); and what each service adds of its own
(ServiceSpec.metrics): deliveries to webhooks, e-mail and SMS, P0 alerts nobody
acknowledged, referral deadlines missed, the audit trail's verification.

Built at each scrape from the runtime's state and the service's own database, so what is
persisted survives a restart; ``*_total`` counters are this process's. Counts and reason
codes only: no id, no personal data, so the endpoint is public like /health (in production
the network policy keeps it inside the cluster)."""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime.collector import CollectorState
from runtime.collector import state as collector_state

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Every metric the network's services expose, the runtime's and the services' own (a
# service's Gauge must be named here: exposition checks); the alert rules and the dashboard
# may name these only (tests/unit/test_alert_rules.py, test_dashboard.py).
RUNTIME_NAMES = (
    "punte_consumer_stopped", "punte_consumer_assigned", "punte_consumer_processed_total",
    "punte_consumer_dead_lettered_total", "punte_consumer_batch_failures_total", "punte_consumer_lag",
    "punte_consumer_last_poll_timestamp_seconds", "punte_outbox_rows", "punte_outbox_oldest_age_seconds",
    "punte_dead_letters", "punte_broker_provisioned", "punte_broker_epoch_changes_total",
    "punte_gc_collections_total", "punte_gc_seconds_total", "punte_gc_frozen_objects",
)
SERVICE_NAMES = {
    "notification": ("punte_deliveries", "punte_p0_alerts_unacknowledged",
                     "punte_p0_alerts_oldest_unacknowledged_age_seconds"),
    "referral": ("punte_referral_deadlines_missed",),
    "audit": ("punte_audit_verification", "punte_audit_verified_timestamp_seconds", "punte_audit_not_audited"),
}
NAMES = RUNTIME_NAMES + tuple(name for names in SERVICE_NAMES.values() for name in names)


@dataclass(frozen=True)
class ConsumerState:
    """One inbox consumer as a scrape finds it (runtime.inbox.InboxConsumer)."""

    group: str
    stopped: bool
    assigned: bool
    processed: int
    dead_lettered: int
    batch_failures: int
    lag: dict[tuple[str, int], int]  # (topic, partition) -> messages not read yet (InboxConsumer.lag)
    polled_at: float  # time.time() of its last poll (of its start, before one)


@dataclass(frozen=True)
class Gauge:
    """A gauge a service adds (ServiceSpec.metrics); the ``service`` label comes first, added
    here. Give every label set the service knows, zeros too: a missing series is not a 0
    to an alert rule."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    samples: Sequence[tuple[tuple[str, ...], float]] = ()


@dataclass
class Snapshot:
    """What one scrape shows, gathered before it is written (the database is asked once)."""

    service: str
    consumers: list[ConsumerState] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=dict)  # state -> rows not published
    outbox_oldest_age: float = 0.0  # seconds; 0 when the relay owes the broker nothing
    dead_letters: dict[str, int] = field(default_factory=dict)  # reason code -> count
    broker_provisioned: bool | None = None  # None: the broker's epoch is not watched
    epoch_changes: int = 0
    gauges: list[Gauge] = field(default_factory=list)  # the service's own
    collector: CollectorState = field(default_factory=collector_state)


class _Families(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot
        group = ["service", "group"]
        stopped = GaugeMetricFamily("punte_consumer_stopped", "1 while a failure limit keeps the consumer "
                                    "stopped (punte consumers resume)", labels=group)
        assigned = GaugeMetricFamily("punte_consumer_assigned", "1 when the consumer holds its partitions", labels=group)
        processed = CounterMetricFamily("punte_consumer_processed", "messages this process recorded in the inbox",
                                        labels=group)
        dead = CounterMetricFamily("punte_consumer_dead_lettered", "messages that failed in a handler and this "
                                   "process dead-lettered", labels=group)
        batches = CounterMetricFamily("punte_consumer_batch_failures", "batches that failed whole (database, "
                                      "outbox) and were tried again", labels=group)
        lag = GaugeMetricFamily("punte_consumer_lag", "messages on the broker this consumer has not read yet, "
                                "per partition it holds", labels=[*group, "topic", "partition"])
        polled = GaugeMetricFamily("punte_consumer_last_poll_timestamp_seconds", "when the consumer last polled "
                                   "the broker (its start, before a first poll)", labels=group)
        for c in s.consumers:
            labels = [s.service, c.group]
            stopped.add_metric(labels, 1 if c.stopped else 0)
            assigned.add_metric(labels, 1 if c.assigned else 0)
            processed.add_metric(labels, c.processed)
            dead.add_metric(labels, c.dead_lettered)
            batches.add_metric(labels, c.batch_failures)
            polled.add_metric(labels, c.polled_at)
            for (topic, partition), behind in sorted(c.lag.items()):
                lag.add_metric([*labels, topic, str(partition)], behind)
        yield from (stopped, assigned, processed, dead, batches, lag, polled)
        outbox = GaugeMetricFamily("punte_outbox_rows", "outbox rows not published, by state (pending, parked, "
                                   "waiting_behind_parked, discarded)", labels=["service", "state"])
        for state, rows in sorted(s.outbox.items()):
            outbox.add_metric([s.service, state], rows)
        yield outbox
        oldest = GaugeMetricFamily("punte_outbox_oldest_age_seconds", "age of the oldest outbox row not published "
                                   "yet (parked rows aside); 0 when none", labels=["service"])
        oldest.add_metric([s.service], s.outbox_oldest_age)
        yield oldest
        letters = GaugeMetricFamily("punte_dead_letters", "dead letters this service wrote and still counts "
                                    "(its outbox keeps them for the outbox-published rule), by reason code",
                                    labels=["service", "reason"])
        for reason, count in sorted(s.dead_letters.items()):
            letters.add_metric([s.service, reason], count)
        yield letters
        if s.broker_provisioned is not None:
            provisioned = GaugeMetricFamily("punte_broker_provisioned", "1 when the broker has an epoch marker; 0: "
                                            "empty or not provisioned, nothing published or read (punte replay)",
                                            labels=["service"])
            provisioned.add_metric([s.service], 1 if s.broker_provisioned else 0)
            yield provisioned
            changes = CounterMetricFamily("punte_broker_epoch_changes", "new broker epochs this process noticed",
                                          labels=["service"])
            changes.add_metric([s.service], s.epoch_changes)
            yield changes
        yield from _collector_families(s.service, s.collector)
        for gauge in s.gauges:
            if gauge.name not in SERVICE_NAMES.get(s.service, ()):
                raise ValueError(f"{s.service}: {gauge.name} is not in runtime.metrics.SERVICE_NAMES")
            family = GaugeMetricFamily(gauge.name, gauge.help, labels=["service", *gauge.labels])
            for values, value in gauge.samples:
                family.add_metric([s.service, *values], value)
            yield family


def _collector_families(service: str, state: CollectorState) -> Iterator[Metric]:
    """Python's garbage collector in this process since it settled (runtime.collector)."""
    collections = CounterMetricFamily("punte_gc_collections", "collections by Python's garbage collector since "
                                      "the service finished starting, per generation", labels=["service", "generation"])
    seconds = CounterMetricFamily("punte_gc_seconds", "CPU seconds spent in those collections, per "
                                  "generation", labels=["service", "generation"])
    for generation, (count, spent) in enumerate(zip(state.collections, state.seconds, strict=True)):
        collections.add_metric([service, str(generation)], count)
        seconds.add_metric([service, str(generation)], spent)
    frozen = GaugeMetricFamily("punte_gc_frozen_objects", "objects made at start-up that the collector no longer "
                               "walks (0: the collector was not settled)", labels=["service"])
    frozen.add_metric([service], state.frozen)
    yield from (collections, seconds, frozen)


async def consumer_state(consumer) -> ConsumerState:  # consumer: runtime.inbox.InboxConsumer
    lag = await consumer.lag()
    return ConsumerState(consumer.group_id, consumer.stopped is not None, consumer.assigned, consumer.processed,
                         consumer.dead_lettered, consumer.batch_failures,
                         {(tp.topic, tp.partition): n for tp, n in lag.items()}, consumer.polled_at)


def age(since: float | None, now: float | None = None) -> float:
    """Seconds from ``since`` (a time.time()) to now; 0 for nothing."""
    return 0.0 if since is None else max(0.0, (time.time() if now is None else now) - since)


def exposition(snapshot: Snapshot) -> bytes:
    """The Prometheus text format of ``snapshot``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(snapshot))
    return generate_latest(registry)
