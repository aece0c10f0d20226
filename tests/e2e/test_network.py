"""The whole network as processes: signed reports in, outcomes, cases, referrals, inbox
entries and audit entries out, with nothing lost and nothing applied twice."""
from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime, timezone

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from contracts.events import EventType, ReportSubmittedV2
from punte.stack import Stack
from punte.status import collect, operator_token
from punte.synthetic import reporters, synthetic_report
from runtime.cloudevents import CloudEvent, decode
from runtime.kafka import client_options, make_producer
from runtime.metrics import RUNTIME_NAMES, SERVICE_NAMES
from services.intake.bootstrap import build_rules
from services.intake.domain.cases import assess
from tests.e2e.conftest import Deliveries, dead_letters, institution_system, sign_in, wait_until

# On the session's broker: Tansu, and Apache Kafka with --broker kafka (decision 0031).
pytestmark = [pytest.mark.e2e, pytest.mark.broker]
REPORTS = 30
NOW = datetime.now(timezone.utc)


async def cases_opened(bootstrap: str, report_ids: set[str], timeout: float = 60) -> dict[str, str]:
    """Report id -> the case intake opened for it, read from the network's own topic
    (a reporter is told the case only when it takes part in it)."""
    found: dict[str, str] = {}
    consumer = AIOKafkaConsumer("punte.cases", bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", **client_options())
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            while not report_ids <= found.keys():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        event = decode(record.headers, record.value)
                        if event.type == EventType.CASE_OPENED.value:
                            found[event.data["report_id"]] = event.data["case_id"]
    finally:
        await consumer.stop()
    return found


async def test_reports_flow_through_the_network_and_every_one_is_accounted_for(network: Stack):
    state = network.state
    bootstrap = network.kafka_bootstrap
    producer = make_producer(bootstrap)
    await producer.start()
    deliveries = Deliveries(bootstrap)
    await deliveries.start()
    systems = {i: institution_system(network, i, producer) for i in reporters()}
    rng = random.Random(7)
    rules = build_rules(state.secrets()["pseudonym_key"])
    before = (await collect(state))["counts"]  # other tests may share the network
    dead_before = len(await dead_letters(network))
    try:
        # 1. N signed reports in -> N outcomes, each the case the rules say.
        sent: list[tuple[str, CloudEvent]] = []
        written: dict[str, ReportSubmittedV2] = {}  # what each reporter sealed, by event id
        for _ in range(REPORTS):
            reporter = rng.choice(list(systems))
            report = synthetic_report(rng, reporter)
            event = systems[reporter].report(report)
            written[event.id] = ReportSubmittedV2.model_validate(report)
            await systems[reporter].send(event)
            sent.append((reporter, event))

        async def all_answered():
            """every report has its outcome"""
            return all(deliveries.outcome_of(e.id) for _, e in sent)
        await wait_until(all_answered)

        opened = await cases_opened(bootstrap, {e.id for _, e in sent})
        case_ids = [opened[e.id] for _, e in sent]
        assert len(set(case_ids)) == REPORTS
        for (reporter, event), case_id in zip(sent, case_ids, strict=True):
            [(receiver, outcome)] = deliveries.outcome_of(event.id)
            expected = assess(written[event.id], rules, NOW)
            assert receiver == reporter
            assert outcome["status"] == "accepted"
            if reporter in (expected.lead, *expected.informed):
                assert outcome["urgency"] == expected.urgency
                assert outcome["informed"] == [expected.lead, *expected.informed]
                assert outcome["case_id"] == case_id
            else:  # a case the reporter takes no part in is not named to it
                assert outcome == {"subject_id": event.id, "subject_type": event.type, "status": "accepted"}

        # 2. Each case is referred to its lead, who learns of it; those informed are told.
        async def all_notified():
            """every lead got its referral and every informed institution its notice"""
            ours = set(case_ids)
            return len([n for _, n in deliveries.notifications("referral-requested") if n["case_id"] in ours]) == REPORTS
        await wait_until(all_notified)
        for (_, event), case_id in zip(sent, case_ids, strict=True):
            expected = assess(written[event.id], rules, NOW)
            referred = [who for who, n in deliveries.notifications("referral-requested") if n["case_id"] == case_id]
            informed = [who for who, n in deliveries.notifications("case-informed") if n["case_id"] == case_id]
            assert referred == [expected.lead]
            assert sorted(informed) == sorted(expected.informed)

        # 3. The same report delivered twice has no second effect.
        reporter, first = sent[0]
        await systems[reporter].send(first)
        # 4. Malformed and unsigned reports are rejected with a code and dead-lettered.
        school = systems["isj-bc"]
        malformed = school.event(EventType.REPORT_SUBMITTED_V3.value, {})
        await producer.send_and_wait("punte.ingress.isj-bc", b"{definitely not json", headers=malformed.headers())
        signed = school.report(synthetic_report(rng, "isj-bc"))
        unsigned = CloudEvent(signed.id, signed.source, signed.type, signed.time, signed.data, None, {})
        await producer.send_and_wait("punte.ingress.isj-bc", unsigned.body(), headers=unsigned.headers())
        # 5. The lead accepts one referral; the referrer hears of it.
        lead_of_first = deliveries.notifications("referral-requested")
        case0 = case_ids[0]
        [(lead, requested)] = [(w, n) for w, n in lead_of_first if n["case_id"] == case0]
        # The lead may be an institution that does not report; it still has its own system.
        if lead not in systems:
            systems[lead] = institution_system(network, lead, producer)
        accept = systems[lead].event(EventType.REFERRAL_ACCEPT.value, {"referral_id": requested["referral_id"]})
        await systems[lead].send(accept)

        async def rejections_and_acceptance_seen():
            """two rejections to isj-bc and the referral acceptance back to the referrer"""
            # Only the answers to these two: other tests of the session send as isj-bc too.
            rejected = [d for who, e in deliveries.events if who == "isj-bc"
                        and e.type == EventType.OUTCOME.value and e.data["status"] == "rejected"
                        and e.data["subject_id"] in (malformed.id, unsigned.id) for d in [e.data]]
            told = [n for _, n in deliveries.notifications("referral-accepted") if n["case_id"] == case0]
            return len(rejected) >= 2 and told and rejected
        rejected = await wait_until(rejections_and_acceptance_seen)
        assert sorted(r["reason"]["code"] for r in rejected) == ["MALFORMED_PAYLOAD", "MISSING_SIGNATURE"]
        [(told, accepted)] = [(w, n) for w, n in deliveries.notifications("referral-accepted")
                              if n["case_id"] == case0]
        assert told == reporter and accepted["case_id"] == case0
        assert [d["status"] for d in (o for _, o in deliveries.outcome_of(accept.id))] == ["accepted"]
        assert len(deliveries.outcome_of(first.id)) == 1, "the duplicate got no second outcome"

        # 6. The operator's view agrees: counts, audit coverage and verification.
        # Every referral request, every informed institution, and the acceptance told to
        # both sides of the referral.
        expected_notifications = REPORTS + 2 + sum(
            len(assess(written[e.id], rules, NOW).informed) for _, e in sent)
        last: dict = {}

        async def quiet():
            """the audit trail has caught up with every topic"""
            last.update(await collect(state))
            counts = last["counts"]
            return dict(last) if counts["audit_entries"] == counts["topic_messages"] and \
                last["audit_state"] == "verified" and \
                counts["notifications"] - before["notifications"] == expected_notifications else None
        try:
            status = await wait_until(quiet)
        except AssertionError:
            raise AssertionError(f"the network did not settle: {json.dumps(last, indent=1)}") from None
        counts = {k: v - before[k] for k, v in status["counts"].items() if isinstance(v, int)}
        assert counts["reports"] == REPORTS + 2  # the duplicate is not a new report
        assert counts["report_outcomes"] == counts["reports"]
        assert counts["cases"] == REPORTS and counts["referrals"] == REPORTS
        assert counts["referrals_accepted"] == 1
        assert status["audit_verified"] is True
        assert all(c["status"] == "up" for c in status["components"].values())
        assert all(status["consistent"].values())

        # The audit trail holds the dead letters, with their reasons.
        token = operator_token(state, network.url("identity"))
        audit_token = await sign_in(network, "auditor")
        async with httpx.AsyncClient(base_url=network.url("audit")) as client:
            denied = await client.get("/entries", headers={"Authorization": f"Bearer {token}"})
        assert denied.status_code == 403
        assert len(await dead_letters(network, audit_token)) - dead_before == 2

        # The lead's case manager sees the referral in the team inbox.
        manager_token = await sign_in(network, f"cm.{lead}")
        async with httpx.AsyncClient(base_url=network.url("notification")) as client:
            inbox = (await client.get("/inbox", headers={"Authorization": f"Bearer {manager_token}"})).json()
            anonymous = await client.get("/inbox")
        assert anonymous.status_code == 401
        assert any(e["case_id"] == case0 and e["kind"] == "referral-requested" for e in inbox["entries"])

        # No child's CNP or name left through any delivery topic.
        delivered = json.dumps([e.data for _, e in deliveries.events], ensure_ascii=False)
        for _, event in sent:
            child = written[event.id].child
            for secret in (child.cnp, child.family_name):
                assert not secret or secret not in delivered
    finally:
        await deliveries.stop()
        await producer.stop()


async def test_institutions_without_kafka_use_the_same_contract_over_http(network: Stack):
    """CloudEvents over HTTP (binary and structured), the same checks, idempotent by id."""
    rng = random.Random(11)
    doctor = institution_system(network, "dsp-bc", producer=None)  # sends over HTTP, not Kafka
    token = await sign_in(network, "sys.dsp-bc")
    auth = {"Authorization": f"Bearer {token}"}

    def binary(event: CloudEvent) -> dict[str, str]:
        return {**auth, "content-type": "application/json",
                **{k.replace("ce_", "ce-", 1): v.decode() for k, v in event.headers() if k.startswith("ce_")}}

    report = doctor.report(synthetic_report(rng, "dsp-bc"))
    structured = doctor.report(synthetic_report(rng, "dsp-bc"))
    envelope = {"specversion": "1.0", "id": structured.id, "source": structured.source,
                "type": structured.type, "time": structured.time, "datacontenttype": "application/json",
                **structured.extensions, "data": structured.data}
    forged = CloudEvent(report.id + "-x", report.source, report.type, report.time,
                        {**report.data, "immediate_danger": not report.data.get("immediate_danger")},
                        None, report.extensions)
    operator = {"Authorization": f"Bearer {await sign_in(network, 'operator')}"}
    async with httpx.AsyncClient(base_url=network.url("intake"), timeout=40) as client:
        cases_before = (await client.get("/stats", headers=operator)).json()["counts"]["cases"]
        first = await client.post("/v1/events", content=report.body(), headers=binary(report))
        again = await client.post("/v1/events", content=report.body(), headers=binary(report))
        posted = await client.post("/v1/events", content=json.dumps(envelope).encode(),
                                   headers={**auth, "content-type": "application/cloudevents+json"})
        tampered = await client.post("/v1/events", content=forged.body(), headers=binary(forged))
        later = await client.get("/v1/events/outcome", params={"source": report.source, "id": report.id},
                                 headers=auth)
        other = await client.post("/v1/events", content=report.body(),
                                  headers={**binary(report), "Authorization":
                                           f"Bearer {await sign_in(network, 'sys.isj-bc')}"})
        anonymous = await client.post("/v1/events", content=report.body(),
                                      headers={k: v for k, v in binary(report).items() if k != "Authorization"})
        cases_after = (await client.get("/stats", headers=operator)).json()["counts"]["cases"]
    assert first.status_code == 200 and first.json()["status"] == "accepted" and first.json()["case_id"]
    assert again.status_code == 200 and again.json() == first.json(), "the same event, the same answer"
    assert later.json() == first.json()
    assert posted.status_code == 200 and posted.json()["status"] == "accepted"
    assert tampered.status_code == 422 and tampered.json()["reason"]["code"] == "BAD_SIGNATURE"
    assert other.status_code == 403 and other.json()["detail"]["code"] == "SOURCE_MISMATCH"
    assert anonymous.status_code == 401
    assert cases_after - cases_before == 2, "two reports, two cases; the repeat had no effect"


async def test_every_service_exposes_the_metrics_its_alerts_read(network: Stack):
    """What Prometheus scrapes (deploy/prometheus/alerts.yaml): every metric the rules may
    name, on every running service, with no token; a healthy network has no consumer
    stopped, no row parked and its broker provisioned."""
    for service in ("intake", "referral", "notification", "audit"):
        async with httpx.AsyncClient(base_url=network.url(service)) as client:
            answer = await client.get("/metrics")
        assert answer.status_code == 200, (service, answer.text)
        samples = [s for f in text_string_to_metric_families(answer.text) for s in f.samples]
        exposed = {s.name for s in samples}
        # Dead letters may have no sample yet; the rest must (tests/e2e/test_metrics.py
        # checks their values during a run).
        names = (set(RUNTIME_NAMES) | set(SERVICE_NAMES.get(service, ()))) - {"punte_dead_letters"}
        assert names <= exposed, (service, names - exposed)
        assert {s.labels["service"] for s in samples if s.name.startswith("punte_")} == {service}
        assert [s.value for s in samples if s.name == "punte_broker_provisioned"] == [1.0], service
        assert not [s for s in samples if s.name == "punte_consumer_stopped" and s.value], service
        assert not [s for s in samples if s.name == "punte_outbox_rows" and s.labels["state"] == "parked"
                    and s.value], service
