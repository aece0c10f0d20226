"""The reference pipeline's routing (bench/reference.py) and the pure helpers the benchmark
and the Stack's replicas rest on."""
from __future__ import annotations

from bench import reference
from bench.e2e import core_percent
from punte.stack import SERVICES, replica_names, service_of

INSTITUTIONS = ("a", "b", "c")


def report(institution: str, id_: str = "r1") -> reference.Message:
    return reference.reports_from([(institution, id_, b"{}", [("ce_type", b"x")])])[0]


def test_a_report_causes_six_messages_on_the_networks_hops():
    sent = report("c")
    assert sent.topic == "bench.ingress.c"
    outcome, case = reference.routes("intake", sent, INSTITUTIONS)
    assert (outcome.topic, case.topic) == ("bench.delivery.c", reference.CASES)
    [referral] = reference.routes("referral", case, INSTITUTIONS)
    assert referral.topic == reference.REFERRALS
    lead, informed = reference.routes("notification", referral, INSTITUTIONS)
    # The lead is the reporter; the one informed another institution (the next, wrapping).
    assert (lead.topic, informed.topic) == ("bench.delivery.c", "bench.delivery.a")
    assert reference.routes("audit", informed, INSTITUTIONS) == []
    caused = [sent, outcome, case, referral, lead, informed]
    assert len(caused) == reference.MESSAGES_PER_REPORT
    ids = [reference.header(m.headers, reference.ID) for m in caused]
    assert len(set(ids)) == len(ids)
    assert all(reference.header(m.headers, reference.FROM) == "c" for m in caused)


def test_a_redelivered_message_causes_the_same_ids():
    first = reference.routes("intake", report("a"), INSTITUTIONS)
    again = reference.routes("intake", report("a"), INSTITUTIONS)
    assert [m.headers for m in first] == [m.headers for m in again]


def test_every_topic_is_a_bench_topic_read_by_audit():
    topics = reference.topics(INSTITUTIONS)
    assert len(topics) == 2 * len(INSTITUTIONS) + 2
    import re
    audit = re.compile(reference.subscription("audit"))
    assert all(name.startswith("bench.") and audit.match(name) for name, _ in topics)
    assert not any(re.match(reference.subscription(s), "punte.cases") for s in reference.STAGES)
    assert re.match(reference.subscription("intake"), "bench.ingress.a")
    assert not re.match(reference.subscription("intake"), "bench.delivery.a")


def test_as_many_institutions_as_the_network_has_ingress_topics():
    from contracts.reference import institutions, topic_partitions
    ingress = [n for n, _ in topic_partitions(institutions()) if n.startswith("punte.ingress.")]
    assert len(reference.network_institutions()) == len(ingress)


def test_database_url_names_the_stages_database():
    assert (reference.database_url("postgresql+asyncpg://postgres@127.0.0.1:5432/postgres", "bench_ref_audit")
            == "postgresql://postgres@127.0.0.1:5432/bench_ref_audit")


def test_replica_names_and_their_service():
    assert replica_names("intake", 1) == ["intake"]
    assert replica_names("audit", 3) == ["audit", "audit-2", "audit-3"]
    for service in SERVICES:
        assert {service_of(n) for n in replica_names(service, 2)} == {service}
    assert service_of("identity") == "identity"
    assert service_of("mail") == "mail"


def test_core_percent_leaves_the_bench_out_of_the_total():
    used = core_percent({"broker": 1.0, "bench": 0.0}, {"broker": 2.0, "bench": 5.0}, 10.0)
    assert used == {"broker": 10.0, "bench": 50.0, "total": 10.0}
