"""The Kafka declaration (contracts.kafka_acls, decision 0027): topics and ACL bindings
derived from topics.yaml and the institutions, least privilege for every principal, and
the table in docs/kafka-acls.md generated from it."""
from __future__ import annotations

import re
from pathlib import Path

from contracts import kafka_acls as k
from contracts.reference import (
    BROKER_EPOCH_TOPIC,
    delivery_topic,
    from_an_institution,
    ingress_topic,
    institutions,
    retention,
    topic_partitions,
)
from runtime.kafka import topic_configs

ROOT = Path(__file__).resolve().parents[2]
IDS = sorted(institutions())


def test_every_topic_has_three_replicas_two_in_sync_and_the_ingress_retention():
    days = retention().ingress_days
    specs = {s.name: s for s in k.topic_specs(IDS, days)}
    # The broker's epoch marker beside the network's topics, kept for ever (decision 0026).
    assert specs.pop(BROKER_EPOCH_TOPIC).configs["retention.ms"] == "-1"
    plan = topic_partitions(IDS)
    assert {n: s.partitions for n, s in specs.items()} == dict(plan)
    assert {s.replication_factor for s in specs.values()} == {3}
    assert {s.configs["min.insync.replicas"] for s in specs.values()} == {"2"}
    # Retention as the embedded default's topic creation sets it (runtime.kafka.topic_configs).
    retained = {n: {"retention.ms": s.configs["retention.ms"]} for n, s in specs.items() if "retention.ms" in s.configs}
    assert retained == {n: {"retention.ms": c["retention.ms"]} for n, c in topic_configs(plan, days).items()}
    # And the maximum message size of what institutions send, as topics.yaml declares it.
    sized = {n: s.configs["max.message.bytes"] for n, s in specs.items() if "max.message.bytes" in s.configs}
    assert sized == {n: c["max.message.bytes"] for n, c in topic_configs(plan, days).items()}
    assert set(sized) == {n for n, _ in plan if from_an_institution(n)}


def test_an_institution_writes_its_ingress_reads_its_delivery_and_nothing_else():
    bindings = k.grants_of("dgaspc-bc", IDS)
    assert {(g.operation, g.resource, g.pattern, g.name) for g in bindings} == {
        ("WRITE", "TOPIC", "LITERAL", ingress_topic("dgaspc-bc")),
        ("READ", "TOPIC", "LITERAL", delivery_topic("dgaspc-bc")),
        ("READ", "TOPIC", "LITERAL", "punte.audit"),  # the audit checkpoints, for witnesses
        ("READ", "GROUP", "PREFIXED", "dgaspc-bc."),
    }


def test_no_institution_reaches_another_institutions_topics_or_the_internal_ones():
    internal = {name for name, _ in topic_partitions([]) if name != "punte.audit"}
    for inst in IDS:
        mine = {ingress_topic(inst), delivery_topic(inst), "punte.audit"}
        topics = {g.name for g in k.grants_of(k.institution_user(inst), IDS) if g.resource == "TOPIC"}
        assert topics == mine and not topics & internal
        assert {g.operation for g in k.grants_of(inst, IDS) if g.name == ingress_topic(inst)} == {"WRITE"}


def test_a_service_reads_and_writes_exactly_what_topics_yaml_says():
    intake = k.grants_of("punte-intake", IDS)
    reads = {g.name for g in intake if g.resource == "TOPIC" and g.operation == "READ"}
    writes = {g.name for g in intake if g.resource == "TOPIC" and g.operation == "WRITE"}
    # and the broker's epoch, which every service reads and only the admin writes (decision 0026)
    # and the HTTP gateway's topic, which only intake writes (decision 0032)
    assert reads == {ingress_topic(i) for i in IDS} | {"punte.referrals", BROKER_EPOCH_TOPIC, "punte.gateway"}
    assert writes == {delivery_topic(i) for i in IDS} | {"punte.cases", "punte.deadletter", "punte.access",
                                                         "punte.gateway"}
    assert [u for u in k.services() if "punte.gateway" in {g.name for g in k.grants_of(k.service_user(u), IDS)
                                                            if g.operation == "WRITE"}] == ["intake"]
    # No service writes an institution's ingress topic: only the institution does.
    for service in k.services():
        assert not [g for g in k.grants_of(k.service_user(service), IDS)
                    if g.operation == "WRITE" and g.name.startswith("punte.ingress.")]
    assert {g.name for g in k.grants_of("punte-notification", IDS) if g.operation == "READ"
            and g.resource == "TOPIC"} == {"punte.cases", "punte.referrals", "punte.access", BROKER_EPOCH_TOPIC}


def test_each_service_uses_only_consumer_groups_under_its_own_prefix():
    """Every group id a service's bootstrap names is inside the group prefix it is granted."""
    for service in k.services():
        source = (ROOT / "services" / service / "bootstrap.py").read_text()
        groups = re.findall(r'group_id="([^"]+)"', source)
        assert groups, service
        (grant,) = [g for g in k.grants_of(k.service_user(service), IDS) if g.resource == "GROUP"]
        assert all(g.startswith(grant.name) for g in groups), (service, groups)
        others = [k.service_group_prefix(s) for s in k.services() if s != service]
        assert not [g for g in groups for o in others if g.startswith(o)]


def test_principals_are_one_per_institution_and_service_and_never_clash():
    users = [p.user for p in k.principals(IDS)]
    assert len(users) == len(set(users)) == len(IDS) + 4
    assert "admin" not in users
    try:
        k.principals([*IDS, "punte-intake"])
    except ValueError as exc:
        assert "punte-intake" in str(exc)
    else:
        raise AssertionError("an institution named like a service was accepted")


def test_the_docs_table_is_the_declaration():
    text = (ROOT / "docs" / "kafka-acls.md").read_text()
    begin, end = text.index(k.TABLE_BEGIN), text.index(k.TABLE_END) + len(k.TABLE_END)
    assert text[begin:end] == k.markdown_table(), "regenerate: punte kafka acls --markdown"


def test_every_topic_a_service_subscribes_to_by_name_is_granted_to_it():
    """topics.yaml is what the ACLs come from: a consumer it does not declare would be refused
    by the broker (TopicAuthorizationFailed) on Apache Kafka, while Tansu lets it read."""
    for service in k.services():
        source = (ROOT / "services" / service / "bootstrap.py").read_text()
        named = {t for listed in re.findall(r"(?:TOPICS =|topics=)\s*\[([^\]]*)\]", source)
                 for t in re.findall(r'"([^"]+)"', listed)}
        readable = {g.name for g in k.grants_of(k.service_user(service), IDS)
                    if g.resource == "TOPIC" and g.operation == "READ"}
        assert named <= readable, (service, named - readable)


def test_every_consuming_service_may_write_dead_letters():
    """runtime.inbox dead-letters what any consumer cannot process: on Apache Kafka a
    service without WRITE on punte.deadletter parks that row (seen with audit)."""
    from runtime.inbox import DEAD_LETTER_TOPIC

    for service in k.services():
        mine = k.grants_of(k.service_user(service), IDS)
        if any(g.operation == "READ" and g.resource == "TOPIC" for g in mine):
            assert ("WRITE", DEAD_LETTER_TOPIC) in {(g.operation, g.name) for g in mine}, service
