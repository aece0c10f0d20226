"""bench/chaos.py's own parts, without a stack: each malformed kind is refused by the
network's door (runtime.ingress.authenticate) with the code the bench expects, and the
books catch what they are there to catch (a lost or doubled outcome, a wrong code, a
case referred or notified twice, a dead letter nothing explains)."""
from __future__ import annotations

import random
import uuid
from datetime import datetime, timezone

import pytest
from joserfc.jwk import ECKey

from bench import chaos
from contracts.events import EventType
from contracts.reference import delivery_topic
from contracts.refusals import Refused
from punte.institution import sealed_report
from punte.synthetic import reporters, synthetic_report
from runtime.cloudevents import CloudEvent
from runtime.inbox import Message as Record
from runtime.ingress import authenticate
from runtime.signing import Keyring, PublicKey, SigningKey

REPORTER, STRANGER = reporters()[:2]


@pytest.fixture(scope="module")
def signed():
    """Two signed v3 reports of REPORTER, sealed to a key of our own, and the keyring that
    knows REPORTER's key."""
    jwk = ECKey.generate_key("P-256").as_dict(private=False) | {"use": "enc", "alg": "ECDH-ES+A256KW", "kid": "k1"}
    key = SigningKey.generate("k-" + REPORTER)
    rng = random.Random(3)
    events = []
    for _ in range(2):
        event_id = str(uuid.uuid4())
        data = sealed_report(synthetic_report(rng, REPORTER), event_id, {"keys": [jwk]})
        events.append(key.sign(CloudEvent.new(EventType.REPORT_SUBMITTED_V3.value,
                                              f"/institutions/{REPORTER}", data, id=event_id)))
    since = datetime(2020, 1, 1, tzinfo=timezone.utc)
    return key, events, Keyring([PublicKey(key.key_id, REPORTER, key.public_raw(), since, None)])


@pytest.mark.parametrize("kind", list(chaos.MALFORMATIONS))
def test_each_malformed_kind_is_refused_with_its_code(signed, kind: str):
    key, (event, other), keyring = signed
    sent = chaos.malformed(kind, REPORTER, event, key, other, STRANGER)
    record = Record(sent.topic, 0, 0, sent.key, sent.value, tuple(sent.headers), 0)
    assert sent.id == event.id  # its outcome names it
    if not chaos.MALFORMATIONS[kind].dead_letter:
        authenticate(record, keyring)  # through the door: intake reads it and refuses it
        return
    with pytest.raises(Refused) as refused:
        authenticate(record, keyring)
    assert refused.value.code == chaos.MALFORMATIONS[kind].code


def test_a_good_report_passes_the_door(signed):
    _, (event, _), keyring = signed
    sent = chaos.wire(event, REPORTER)
    authenticate(Record(sent.topic, 0, 0, sent.key, sent.value, tuple(sent.headers), 0), keyring)


def outcome(report_id: str, status: str = "accepted", code: str | None = None, event_id: str | None = None):
    data = {"subject_id": report_id, "subject_type": EventType.REPORT_SUBMITTED_V3.value, "status": status}
    if code:
        data["reason"] = {"code": code}
    return CloudEvent.new(EventType.OUTCOME.value, "/services/intake", data, id=event_id)


def test_the_books_catch_a_lost_a_doubled_and_a_wrong_answer():
    topic = delivery_topic(REPORTER)
    sent = [chaos.Message(f"r{i}", "t", b"", b"", [], REPORTER) for i in range(3)]
    sent.append(chaos.Message("bad", "t", b"", b"", [], REPORTER, malformed="unsigned"))
    books = chaos.Books("unused")
    books.read(topic, outcome("r0", event_id="o0"))
    books.read(topic, outcome("r0", event_id="o0"))  # the same answer again: dropped by id
    books.read(topic, outcome("r1", event_id="o1"))
    books.read(topic, outcome("r1", event_id="o1-again"))  # answered twice
    books.read(topic, outcome("bad", "rejected", "BAD_SIGNATURE"))
    checked = chaos.audit_books(books, sent)
    assert checked["lost"] == ["r2"]
    assert checked["doubled"] == ["r1"]
    assert checked["wrong_codes"] == [{"id": "bad", "malformed": "unsigned", "expected": "MISSING_SIGNATURE",
                                       "got": "BAD_SIGNATURE"}]
    assert books.repeated == 1


def test_the_books_catch_a_second_referral_a_second_notice_and_an_unexplained_dead_letter():
    books = chaos.Books("unused")
    opened = {"case_id": "case-1", "report_id": "r0", "lead": "dgaspc-bc", "informed": ["isj-bc"]}
    books.read("punte.cases", CloudEvent.new(EventType.CASE_OPENED.value, "/services/intake", opened))
    for referral in ("ref-a", "ref-b"):
        books.read("punte.referrals", CloudEvent.new(EventType.REFERRAL_REQUESTED.value, "/services/referral", {
            "case_id": "case-1", "referral_id": referral, "kind": "case"}))
    for notification_id in ("n1", "n2"):
        books.read(delivery_topic("isj-bc"), CloudEvent.new(EventType.CASE_NOTIFICATION.value, "/services/notification", {
            "notification_id": notification_id, "recipient": "isj-bc", "kind": "case-informed",
            "case_id": "case-1", "referral_id": None}))
    books.read("punte.deadletter", CloudEvent.new(EventType.DEAD_LETTER_V2.value, "/services/referral", {
        "reason": {"code": "PROCESSING_FAILED"}, "service": "referral", "topic": "punte.cases",
        "headers": {"ce_id": "x"}}, id="dl-1"))
    checked = chaos.audit_books(books, [])
    assert checked["initial_referral_doubled"] == ["case-1"]
    assert ["isj-bc", "case-informed", "case-1", None] in checked["notice_doubled"]
    assert ["dgaspc-bc", "referral-requested", "case-1", "ref-a"] in checked["notice_missing"]
    assert [d["id"] for d in checked["dead_letters_unexplained"]] == ["dl-1"]


def test_on_apache_kafka_each_round_also_kills_a_kafka_node():
    options = chaos.Options(kill_kafka_broker=True, broker="kafka")
    plan = chaos.fault_plan(random.Random(1), chaos.fault_round(options))
    first_round = [next(plan) for _ in chaos.fault_round(options)]
    assert sorted(first_round) == sorted([*chaos.ROUND, chaos.KAFKA_BROKER_KILL])
    assert chaos.fault_round(chaos.Options()) == chaos.ROUND


def test_a_round_without_its_kafka_node_killed_does_not_balance():
    summary = {
        "books": {k: [] for k in chaos.FAILURES}, "duplicate_rows": {},
        "audit": {"state": "verified", "not_audited": 0, "problems": []},
        "faults": {"count": {fault: 1 for fault in chaos.ROUND}},
        "options": {"kill_kafka_broker": True},
    }
    assert not chaos.balanced(summary)
    summary["faults"]["count"][chaos.KAFKA_BROKER_KILL] = 1
    assert chaos.balanced(summary)


class Cluster:
    """Three nodes; node 2 leads every ingress partition."""

    nodes = [type("Node", (), {"node_id": i})() for i in (1, 2, 3)]

    def leader(self, topic: str, partition: int = 0) -> int | None:
        return 2


def test_a_kafka_fault_hits_the_leader_of_a_busy_ingress_partition_never_the_same_node_twice_in_a_row():
    targets = chaos.KafkaTargets(Cluster(), random.Random(1), busiest=[REPORTER])
    kill, pause = chaos.KAFKA_BROKER_KILL, "pause broker"
    assert [targets.pick(f) for f in (kill, pause, kill, pause, kill)] == [2, 2, 3, 3, 2]


def test_the_busiest_institutions_are_those_with_most_messages():
    order = [chaos.Message(str(i), f"punte.ingress.{who}", b"", b"", [], who)
             for i, who in enumerate(["a", "b", "b", "c", "c", "c"])]
    assert chaos.busiest(order, 2) == ["c", "b"]
