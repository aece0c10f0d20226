"""The whole network as processes: signed reports in, outcomes, cases, referrals, inbox
entries and audit entries out, with nothing lost and nothing applied twice."""
from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from datetime import datetime, timezone

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from contracts.events import EventType, ReportSubmittedV2
from punte.institution import InstitutionSystem
from punte.stack import Stack
from punte.status import collect, operator_token
from punte.synthetic import reporters, synthetic_report
from runtime.cloudevents import CloudEvent, decode
from runtime.kafka import make_producer
from services.intake.bootstrap import build_rules
from services.intake.domain.cases import assess

pytestmark = pytest.mark.e2e
REPORTS = 30
NOW = datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def network(infrastructure, tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("e2e") / "state",
                  kafka_bootstrap=infrastructure.kafka_bootstrap,
                  database_url=infrastructure.database_url)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


async def sign_in(network: Stack, username: str) -> str:
    """A token from the embedded issuer, the way a person signs in."""
    password = json.loads(network.state.passwords_file.read_text())[username]
    async with httpx.AsyncClient(base_url=network.url("identity")) as client:
        answer = await client.post("/token", data={"grant_type": "password", "username": username,
                                                   "password": password})
    answer.raise_for_status()
    return answer.json()["access_token"]


async def wait_until(check: Callable[[], object], timeout: float = 60, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met after {timeout}s: {check.__doc__}")
        await asyncio.sleep(every)


class Deliveries:
    """What institutions receive on their delivery topics, as their systems would read it."""

    def __init__(self, bootstrap: str) -> None:
        self.events: list[tuple[str, CloudEvent]] = []
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                          auto_offset_reset="earliest", metadata_max_age_ms=1000)
        self._consumer.subscribe(pattern=r"^punte\.delivery\..+")
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._consumer.start()

        async def run() -> None:
            async for record in self._consumer:
                self.events.append((record.topic.removeprefix("punte.delivery."),
                                    decode(record.headers, record.value)))
        self._task = asyncio.create_task(run())

    async def stop(self) -> None:
        assert self._task
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    def outcome_of(self, event_id: str) -> list[tuple[str, dict]]:
        return [(who, e.data) for who, e in self.events
                if e.type == EventType.OUTCOME.value and e.data["subject_id"] == event_id]

    def notifications(self, kind: str | None = None) -> list[tuple[str, dict]]:
        return [(who, e.data) for who, e in self.events if e.type == EventType.CASE_NOTIFICATION.value
                and (kind is None or e.data["kind"] == kind)]


async def test_reports_flow_through_the_network_and_every_one_is_accounted_for(network: Stack):
    state = network.state
    bootstrap = network.kafka_bootstrap
    producer = make_producer(bootstrap)
    await producer.start()
    deliveries = Deliveries(bootstrap)
    await deliveries.start()
    systems = {i: InstitutionSystem(i, state.institution_key(i), producer) for i in reporters()}
    rng = random.Random(7)
    rules = build_rules(state.secrets()["pseudonym_key"])
    try:
        # 1. N signed reports in -> N outcomes, each the case the rules say.
        sent: list[tuple[str, CloudEvent]] = []
        for _ in range(REPORTS):
            reporter = rng.choice(list(systems))
            event = systems[reporter].event(EventType.REPORT_SUBMITTED_V2.value,
                                            synthetic_report(rng, reporter))
            await systems[reporter].send(event)
            sent.append((reporter, event))

        async def all_answered():
            """every report has its outcome"""
            return all(deliveries.outcome_of(e.id) for _, e in sent)
        await wait_until(all_answered)

        case_ids = []
        for reporter, event in sent:
            [(receiver, outcome)] = deliveries.outcome_of(event.id)
            expected = assess(ReportSubmittedV2.model_validate(event.data), rules, NOW)
            assert receiver == reporter
            assert outcome["status"] == "accepted"
            assert outcome["urgency"] == expected.urgency
            assert outcome["informed"] == [expected.lead, *expected.informed]
            case_ids.append(outcome["case_id"])
        assert len(set(case_ids)) == REPORTS

        # 2. Each case is referred to its lead, who learns of it; those informed are told.
        async def all_notified():
            """every lead got its referral and every informed institution its notice"""
            return len(deliveries.notifications("referral-requested")) == REPORTS
        await wait_until(all_notified)
        for (_, event), case_id in zip(sent, case_ids, strict=True):
            expected = assess(ReportSubmittedV2.model_validate(event.data), rules, NOW)
            referred = [who for who, n in deliveries.notifications("referral-requested") if n["case_id"] == case_id]
            informed = [who for who, n in deliveries.notifications("case-informed") if n["case_id"] == case_id]
            assert referred == [expected.lead]
            assert sorted(informed) == sorted(expected.informed)

        # 3. The same report delivered twice has no second effect.
        reporter, first = sent[0]
        await systems[reporter].send(first)
        # 4. Malformed and unsigned reports are rejected with a code and dead-lettered.
        school = systems["isj-bc"]
        await producer.send_and_wait("punte.ingress.isj-bc", b"{definitely not json",
                                     headers=school.event(EventType.REPORT_SUBMITTED_V2.value, {}).headers())
        unsigned = CloudEvent.new(EventType.REPORT_SUBMITTED_V2.value, school.source,
                                  synthetic_report(rng, "isj-bc"))
        await producer.send_and_wait("punte.ingress.isj-bc", unsigned.body(), headers=unsigned.headers())
        # 5. The lead accepts one referral; the referrer hears of it.
        lead_of_first = deliveries.notifications("referral-requested")
        case0 = case_ids[0]
        [(lead, requested)] = [(w, n) for w, n in lead_of_first if n["case_id"] == case0]
        accept = systems[lead].event(EventType.REFERRAL_ACCEPT.value, {"referral_id": requested["referral_id"]}) \
            if lead in systems else None
        if accept is None:  # a lead that does not report still has its own system
            systems[lead] = InstitutionSystem(lead, state.institution_key(lead), producer)
            accept = systems[lead].event(EventType.REFERRAL_ACCEPT.value, {"referral_id": requested["referral_id"]})
        await systems[lead].send(accept)

        async def rejections_and_acceptance_seen():
            """two rejections to isj-bc and the referral acceptance back to the referrer"""
            rejected = [d for who, e in deliveries.events if who == "isj-bc"
                        and e.type == EventType.OUTCOME.value and e.data["status"] == "rejected"
                        for d in [e.data]]
            told = deliveries.notifications("referral-accepted")
            return len(rejected) >= 2 and told and rejected
        rejected = await wait_until(rejections_and_acceptance_seen)
        assert sorted(r["reason"]["code"] for r in rejected) == ["MALFORMED_PAYLOAD", "MISSING_SIGNATURE"]
        [(told, accepted)] = deliveries.notifications("referral-accepted")
        assert told == reporter and accepted["case_id"] == case0
        assert [d["status"] for d in (o for _, o in deliveries.outcome_of(accept.id))] == ["accepted"]
        assert len(deliveries.outcome_of(first.id)) == 1, "the duplicate got no second outcome"

        # 6. The operator's view agrees: counts, audit coverage and verification.
        expected_notifications = REPORTS + 1 + sum(
            len(assess(ReportSubmittedV2.model_validate(e.data), rules, NOW).informed) for _, e in sent)
        last: dict = {}

        async def quiet():
            """the audit trail has caught up with every topic"""
            last.update(await collect(state))
            counts = last["counts"]
            return dict(last) if counts["audit_entries"] == counts["topic_messages"] and \
                counts["notifications"] == expected_notifications else None
        try:
            status = await wait_until(quiet)
        except AssertionError:
            raise AssertionError(f"the network did not settle: {json.dumps(last, indent=1)}") from None
        counts = status["counts"]
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
            found = (await client.get("/entries", params={"event_type": EventType.DEAD_LETTER.value},
                                      headers={"Authorization": f"Bearer {audit_token}"})).json()
            denied = await client.get("/entries", headers={"Authorization": f"Bearer {token}"})
        assert denied.status_code == 403
        assert len(found["entries"]) == 2

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
            child = event.data["child"]
            for secret in (child.get("cnp"), child.get("family_name")):
                assert not secret or secret not in delivered
    finally:
        await deliveries.stop()
        await producer.stop()
