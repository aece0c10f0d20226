"""A service's Prometheus metrics (GET /metrics): what an operator is alerted on when the
network stops keeping its promises (deploy/prometheus/alerts.yaml): a consumer a failure
limit stopped (decision 0022), outbox rows the broker will not take (0021), dead letters,
a broker with no epoch (0026).

Built at each scrape from the runtime's state and the service's own database, so what is
persisted survives a restart; ``*_total`` counters are this process's. Counts and reason
codes only: no id, no personal data, so the endpoint is public like /health (in production
the network policy keeps it inside the cluster)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Every metric a service exposes; the alert rules may name these only (a test checks).
NAMES = (
    "punte_consumer_stopped", "punte_consumer_assigned", "punte_consumer_processed_total",
    "punte_consumer_dead_lettered_total", "punte_outbox_rows", "punte_dead_letters",
    "punte_broker_provisioned", "punte_broker_epoch_changes_total",
)


@dataclass
class Snapshot:
    """What one scrape shows, gathered before it is written (the database is asked once)."""

    service: str
    consumers: list[tuple[str, bool, bool, int, int]] = field(default_factory=list)  # group, stopped, assigned, processed, dead-lettered
    outbox: dict[str, int] = field(default_factory=dict)  # state -> rows not published
    dead_letters: dict[str, int] = field(default_factory=dict)  # reason code -> count
    broker_provisioned: bool | None = None  # None: the broker's epoch is not watched
    epoch_changes: int = 0


class _Families(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot
        per_group = {
            "punte_consumer_stopped": GaugeMetricFamily(
                "punte_consumer_stopped", "1 while a failure limit keeps the consumer stopped (punte consumers resume)",
                labels=["service", "group"]),
            "punte_consumer_assigned": GaugeMetricFamily(
                "punte_consumer_assigned", "1 when the consumer holds its partitions", labels=["service", "group"]),
            "punte_consumer_processed": CounterMetricFamily(
                "punte_consumer_processed", "messages this process recorded in the inbox", labels=["service", "group"]),
            "punte_consumer_dead_lettered": CounterMetricFamily(
                "punte_consumer_dead_lettered", "messages this process dead-lettered", labels=["service", "group"]),
        }
        for group, stopped, assigned, processed, dead in s.consumers:
            labels = [s.service, group]
            per_group["punte_consumer_stopped"].add_metric(labels, 1 if stopped else 0)
            per_group["punte_consumer_assigned"].add_metric(labels, 1 if assigned else 0)
            per_group["punte_consumer_processed"].add_metric(labels, processed)
            per_group["punte_consumer_dead_lettered"].add_metric(labels, dead)
        yield from per_group.values()
        outbox = GaugeMetricFamily("punte_outbox_rows", "outbox rows not published, by state (pending, parked, "
                                   "waiting_behind_parked, discarded)", labels=["service", "state"])
        for state, rows in sorted(s.outbox.items()):
            outbox.add_metric([s.service, state], rows)
        yield outbox
        dead = GaugeMetricFamily("punte_dead_letters", "dead letters this service wrote and still counts "
                                 "(its outbox keeps them for the outbox-published rule), by reason code",
                                 labels=["service", "reason"])
        for reason, count in sorted(s.dead_letters.items()):
            dead.add_metric([s.service, reason], count)
        yield dead
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


def exposition(snapshot: Snapshot) -> bytes:
    """The Prometheus text format of ``snapshot``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(snapshot))
    return generate_latest(registry)
