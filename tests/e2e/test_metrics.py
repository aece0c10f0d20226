"""Issue #15's metrics test: every service of the running network is scraped as Prometheus
scrapes it (GET /metrics, no token) during an end-to-end run, and each metric the alerts
and the dashboard read is there with values that say what happened: a P0 report opens a P0
alert that waits for an acknowledgement and stops waiting when someone acknowledges it; the
webhook that failed twice, the e-mail and the SMS count as delivered; the consumers polled
just now, processed the reports and end with no lag; the outboxes end with nothing late;
the referral deadlines missed are at most the open referrals; the audit trail verified or
is catching up; each service's garbage collector was settled after start-up."""
from __future__ import annotations

import random
import time
from collections.abc import Iterable
from datetime import date

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from punte.stack import Stack
from punte.synthetic import reporters, synthetic_cnp, synthetic_report
from runtime.kafka import make_producer
from runtime.metrics import RUNTIME_NAMES, SERVICE_NAMES
from tests.e2e.conftest import WEBHOOK_INSTITUTION, Deliveries, institution_system, sign_in, wait_until

# On the session's broker: Tansu, and Apache Kafka with --broker kafka (decision 0031).
pytestmark = [pytest.mark.e2e, pytest.mark.broker]
SERVICES = ("intake", "referral", "notification", "audit")
REPORTS = 20


async def scrape(network: Stack) -> dict[str, list[Sample]]:
    """Every service's samples, as one Prometheus scrape would find them."""
    found: dict[str, list[Sample]] = {}
    async with httpx.AsyncClient(timeout=30) as client:
        for service in SERVICES:
            answer = await client.get(network.url(service) + "/metrics")
            assert answer.status_code == 200, (service, answer.text)
            found[service] = [s for f in text_string_to_metric_families(answer.text) for s in f.samples]
    return found


def values(samples: Iterable[Sample], name: str, **labels: str) -> list[float]:
    return [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    return sum(values(samples, name, **labels))


def assert_sensible(scraped: dict[str, list[Sample]]) -> None:
    """What holds at any moment of a healthy run, on every service."""
    now = time.time()
    for service, samples in scraped.items():
        # Every metric listed for the service is there (dead letters have a sample only
        # once the service wrote one); every sample is the service's own.
        expected = (set(RUNTIME_NAMES) | set(SERVICE_NAMES.get(service, ()))) - {"punte_dead_letters"}
        assert expected <= {s.name for s in samples}, (service, expected - {s.name for s in samples})
        assert {s.labels["service"] for s in samples if s.name.startswith("punte_")} == {service}
        assert not any(values(samples, "punte_consumer_stopped")), service
        assert values(samples, "punte_broker_provisioned") == [1.0], service
        # The collector was settled after start-up (runtime.collector): start-up's objects
        # frozen, and its collections counted per generation.
        assert values(samples, "punte_gc_frozen_objects")[0] > 10_000, service
        assert len(values(samples, "punte_gc_seconds_total")) == 3, service
        assert all(v >= 0 for v in values(samples, "punte_consumer_lag")), service
        assert all(now - 60 < v <= now + 1 for v in values(samples, "punte_consumer_last_poll_timestamp_seconds")), service
        assert 0 <= total(samples, "punte_outbox_oldest_age_seconds") < 60, service
        assert not total(samples, "punte_outbox_rows", state="parked"), service
        assert all(v >= 0 and s.labels["reason"].isupper() for s in samples if s.name == "punte_dead_letters"
                   for v in [s.value]), service
        groups = {s.labels["group"] for s in samples if s.name == "punte_consumer_processed_total"}
        assert groups and groups == {s.labels["group"] for s in samples
                                     if s.name == "punte_consumer_last_poll_timestamp_seconds"}, service


async def test_every_service_shows_every_metric_with_sensible_values_during_a_run(network: Stack):
    before = await scrape(network)
    assert_sensible(before)
    producer = make_producer(network.kafka_bootstrap)
    await producer.start()
    deliveries = Deliveries(network.kafka_bootstrap)
    await deliveries.start()
    rng = random.Random(15)
    systems = {i: institution_system(network, i, producer) for i in reporters()}
    try:
        # A police unit reports a child in immediate danger (P0): the DGASPC is asked to take
        # the case, its person on call is alerted by e-mail and SMS, its system by webhook.
        police = systems["ipj-bc"]
        danger = police.report({
            "reporter": {"institution": "ipj-bc", "role": "police-officer"}, "channel": "police-patrol",
            "child": {"cnp": synthetic_cnp(rng, date(2014, 5, 6)), "given_name": "Ilinca",
                      "family_name": "Metricescu", "uat_siruta": 20297, "county": "BC"},
            "risks": [{"category": "trafficking"}], "immediate_danger": True,
            "description": "Date sintetice pentru testul metricilor."})
        await police.send(danger)
        # And reports from every kind of reporter, scraped while they flow.
        for _ in range(REPORTS):
            reporter = rng.choice(list(systems))
            await systems[reporter].send(systems[reporter].report(synthetic_report(rng, reporter)))
        assert_sensible(await scrape(network))

        async def case_opened():
            """the P0 report was answered with its case"""
            return [d["case_id"] for _, d in deliveries.outcome_of(danger.id) if d.get("case_id")]
        [case_id] = await wait_until(case_opened, 60)

        async def referred():
            """the DGASPC was asked to take the P0 case"""
            return [d for who, d in deliveries.notifications("referral-requested")
                    if who == WEBHOOK_INSTITUTION and d["case_id"] == case_id]
        [notice] = await wait_until(referred, 60)
    finally:
        await deliveries.stop()
        await producer.stop()

    # The P0 alert waits for an acknowledgement: counted, with an age.
    async def alert_waits():
        """notification counts one more P0 alert unacknowledged"""
        samples = (await scrape(network))["notification"]
        waiting = total(samples, "punte_p0_alerts_unacknowledged")
        before_waiting = total(before["notification"], "punte_p0_alerts_unacknowledged")
        return samples if waiting > before_waiting else None
    samples = await wait_until(alert_waits, 60)
    assert 0 < total(samples, "punte_p0_alerts_oldest_unacknowledged_age_seconds") < 3600
    assert {s.labels["level"] for s in samples if s.name == "punte_p0_alerts_unacknowledged"} >= {"0", "1", "2"}

    # The webhook failed twice then was delivered; the alert's e-mail and SMS were sent.
    async def delivered():
        """the webhook, an e-mail and an SMS more were delivered"""
        samples = (await scrape(network))["notification"]
        grown = [total(samples, "punte_deliveries", channel=c, status="delivered")
                 > total(before["notification"], "punte_deliveries", channel=c, status="delivered")
                 for c in ("webhook", "email", "sms")]
        return samples if all(grown) else None
    samples = await wait_until(delivered, 90)
    assert {(s.labels["channel"], s.labels["status"]) for s in samples if s.name == "punte_deliveries"} == {
        (c, s) for c in ("webhook", "email", "sms") for s in ("pending", "retrying", "delivered", "failed")}
    assert total(samples, "punte_deliveries", status="failed") == total(before["notification"], "punte_deliveries",
                                                                         status="failed")

    # Someone on call acknowledges it: it no longer waits.
    waiting = total((await scrape(network))["notification"], "punte_p0_alerts_unacknowledged")
    token = await sign_in(network, "cm.dgaspc-bc")
    async with httpx.AsyncClient(base_url=network.url("notification")) as client:
        acknowledged = await client.post(f"/inbox/{notice['notification_id']}/ack",
                                         headers={"Authorization": f"Bearer {token}"})
    assert acknowledged.status_code == 200, acknowledged.text

    async def alert_acknowledged():
        """the acknowledged alert no longer counts"""
        return total((await scrape(network))["notification"], "punte_p0_alerts_unacknowledged") == waiting - 1
    await wait_until(alert_acknowledged, 30)

    # The network goes quiet: nothing left to read, nothing late in an outbox.
    async def quiet():
        """every consumer read everything and every outbox published everything"""
        scraped = await scrape(network)
        done = all(not total(s, "punte_consumer_lag") and not total(s, "punte_outbox_oldest_age_seconds")
                   for s in scraped.values())
        return scraped if done else None
    after = await wait_until(quiet, 90)
    assert_sensible(after)
    for service in SERVICES:
        # Each consumer holding partitions knows each one's lag: 0 now.
        lagging = {(s.labels["group"], s.labels["topic"], s.labels["partition"]) for s in after[service]
                   if s.name == "punte_consumer_lag"}
        assert lagging, service
        assert any(values(after[service], "punte_consumer_assigned")), service
    assert total(after["intake"], "punte_consumer_processed_total") >= total(
        before["intake"], "punte_consumer_processed_total") + REPORTS + 1
    assert total(after["audit"], "punte_consumer_processed_total") > total(before["audit"],
                                                                           "punte_consumer_processed_total")

    # Deadlines missed: every step and urgency, never more than the referrals still open.
    missed = [s for s in after["referral"] if s.name == "punte_referral_deadlines_missed"]
    assert len({(s.labels["step"], s.labels["urgency"]) for s in missed}) == 5 * 4
    operator = await sign_in(network, "operator")
    async with httpx.AsyncClient(base_url=network.url("referral")) as client:
        still_open = (await client.get("/stats", headers={"Authorization": f"Bearer {operator}"})).json()["counts"]["open"]
    assert all(s.value >= 0 for s in missed) and sum(s.value for s in missed) <= still_open * 5

    # The audit trail's last verification: verified, or catching up; never failed.
    trail = after["audit"]
    states = {s.labels["state"]: s.value for s in trail if s.name == "punte_audit_verification"}
    assert set(states) == {"verified", "lagging", "failed"} and sum(states.values()) == 1, states
    assert states["failed"] == 0
    assert values(trail, "punte_audit_verified_timestamp_seconds")[0] <= time.time()
    assert values(trail, "punte_audit_not_audited")[0] >= 0
