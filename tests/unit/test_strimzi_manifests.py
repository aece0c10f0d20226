"""Strimzi's KafkaTopic and KafkaUser resources (contracts.strimzi, decision 0028) are the
declaration of contracts.kafka_acls, nothing more or less: the committed files under
deploy/kubernetes/strimzi/ equal the generation, every grant appears exactly once as an ACL
rule of its principal's KafkaUser, and every topic has its partitions, replicas and configs."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml
from typer.testing import CliRunner

from contracts import kafka_acls as k
from contracts import strimzi
from contracts.reference import BROKER_EPOCH_TOPIC, institutions, retention
from punte.cli import app

ROOT = Path(__file__).resolve().parents[2]
STRIMZI = ROOT / "deploy" / "kubernetes" / "strimzi"
IDS = sorted(institutions())

_FROM_PATTERN = {"literal": k.LITERAL, "prefix": k.PREFIXED}


def committed(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((STRIMZI / name).read_text()) if d]


def test_the_committed_files_are_the_generation():
    for name, content in strimzi.network_files().items():
        assert (STRIMZI / name).read_text() == content, f"`punte kafka manifests --write` ({name})"


def test_the_check_command_refuses_a_stale_file(tmp_path: Path):
    runner = CliRunner()
    assert runner.invoke(app, ["kafka", "manifests", "--write", "--dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["kafka", "manifests", "--dir", str(tmp_path)]).exit_code == 0
    users = tmp_path / "users.yaml"
    users.write_text(users.read_text().replace("operations: [Write]", "operations: [Read]", 1))
    result = runner.invoke(app, ["kafka", "manifests", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "users.yaml" in result.output


def test_every_grant_is_one_acl_rule_of_its_principal_and_nothing_else():
    seen: Counter[k.Grant] = Counter()
    users = committed("users.yaml")
    for user in users:
        assert user["apiVersion"] == "kafka.strimzi.io/v1" and user["kind"] == "KafkaUser"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == strimzi.CLUSTER
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        name = user["metadata"]["name"]
        if name == k.ADMIN_USER:  # the super user: no rules of its own
            assert "authorization" not in user["spec"]
            continue
        assert user["spec"]["authorization"]["type"] == "simple"
        for rule in user["spec"]["authorization"]["acls"]:
            assert rule["type"] == "allow" and rule["host"] == "*"
            [operation] = rule["operations"]
            resource = rule["resource"]
            seen[k.Grant(name, resource["type"].upper(), _FROM_PATTERN[resource["patternType"]],
                         resource["name"], operation.upper())] += 1
    assert set(seen) == set(k.grants(IDS))
    assert set(seen.values()) == {1}
    assert sorted(u["metadata"]["name"] for u in users) == sorted(
        [k.ADMIN_USER, *(p.user for p in k.principals(IDS))])


def test_an_institution_user_may_write_only_its_own_ingress_topic():
    users = {u["metadata"]["name"]: u for u in committed("users.yaml")}
    rules = users[IDS[0]]["spec"]["authorization"]["acls"]
    writes = [r["resource"]["name"] for r in rules if r["operations"] == ["Write"]]
    assert writes == [f"punte.ingress.{IDS[0]}"]


def test_every_topic_has_its_partitions_three_replicas_and_its_configs():
    topics = {t["spec"]["topicName"]: t for t in committed("topics.yaml")}
    specs = {s.name: s for s in k.topic_specs(IDS, retention().ingress_days)}
    assert set(topics) == set(specs)
    assert BROKER_EPOCH_TOPIC in topics
    for name, topic in topics.items():
        assert topic["metadata"]["name"] == name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == strimzi.CLUSTER
        assert topic["spec"]["partitions"] == specs[name].partitions
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"] == dict(specs[name].configs)
        assert topic["spec"]["config"]["min.insync.replicas"] == "2"
