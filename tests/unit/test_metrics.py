"""GET /metrics' text (runtime/metrics.py): every family a snapshot fills is one NAMES lists,
labelled with its service; a service can add only the gauges listed for it."""
from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from runtime.inbox import partition_lag
from runtime.metrics import (
    NAMES,
    RUNTIME_NAMES,
    SERVICE_NAMES,
    ConsumerState,
    Gauge,
    Snapshot,
    age,
    exposition,
)


def samples(snapshot: Snapshot) -> list:
    return [s for family in text_string_to_metric_families(exposition(snapshot).decode()) for s in family.samples]


def full(service: str) -> Snapshot:
    now = time.time()
    return Snapshot(
        service, consumers=[ConsumerState("punte-x", stopped=True, assigned=False, processed=7, dead_lettered=2,
                                          batch_failures=1, lag={("punte.cases", 0): 3, ("punte.cases", 1): 0},
                                          polled_at=now)],
        outbox={"pending": 4, "parked": 1, "waiting_behind_parked": 0, "discarded": 0}, outbox_oldest_age=12.5,
        dead_letters={"PROCESSING_FAILED": 2}, broker_provisioned=True, epoch_changes=1,
        gauges=[Gauge(name, "help", ("kind",), [(("a",), 1)]) for name in SERVICE_NAMES.get(service, ())])


@pytest.mark.parametrize("service", ["intake", "referral", "notification", "audit"])
def test_a_full_snapshot_shows_every_name_listed_for_its_service_and_nothing_else(service):
    found = samples(full(service))
    names = {s.name for s in found if not s.name.endswith("_created")}
    assert names == set(RUNTIME_NAMES) | set(SERVICE_NAMES.get(service, ())) and names <= set(NAMES)
    assert {s.labels["service"] for s in found} == {service}


def test_consumer_values_are_as_given():
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples(full("intake"))}
    group = (("group", "punte-x"), ("service", "intake"))
    assert found[("punte_consumer_stopped", group)] == 1
    assert found[("punte_consumer_processed_total", group)] == 7
    assert found[("punte_consumer_batch_failures_total", group)] == 1
    assert found[("punte_consumer_lag", (*group[:1], ("partition", "0"), group[1], ("topic", "punte.cases")))] == 3
    assert found[("punte_outbox_oldest_age_seconds", (("service", "intake"),))] == 12.5
    assert abs(found[("punte_consumer_last_poll_timestamp_seconds", group)] - time.time()) < 60


def test_a_service_cannot_add_a_metric_not_listed_for_it():
    with pytest.raises(ValueError, match="punte_deliveries"):
        exposition(Snapshot("referral", gauges=[Gauge("punte_deliveries", "not referral's")]))


def test_age():
    assert age(None) == 0 and age(100.0, now=160.0) == 60 and age(200.0, now=160.0) == 0


class Client:
    """What partition_lag reads of an aiokafka consumer: its partitions, each one's high
    watermark from the last fetch answer and its position (None: being reset, never known)."""

    def __init__(self, partitions: dict[TopicPartition, tuple[int | None, int | None]]) -> None:
        self.partitions = partitions

    def assignment(self) -> set[TopicPartition]:
        return set(self.partitions)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.partitions[tp][0]

    async def position(self, tp: TopicPartition) -> int:
        position = self.partitions[tp][1]
        if position is None:
            await asyncio.Event().wait()
        return position


async def test_lag_is_the_high_watermark_less_the_position_of_each_partition_fetched():
    a, b, c = (TopicPartition("punte.cases", p) for p in range(3))
    assert await partition_lag(Client({a: (10, 4), b: (7, 7), c: (None, 0)})) == {a: 6, b: 0}


async def test_lag_never_waits_for_a_position_being_reset():
    a = TopicPartition("punte.cases", 0)
    assert await asyncio.wait_for(partition_lag(Client({a: (10, None)})), 1) == {}
