"""deploy/compose.yaml (decision 0028): three KRaft nodes with SASL SCRAM-SHA-512 and the
StandardAuthorizer, a one-shot kafka-setup (`punte kafka apply`, then `punte replay
--bootstrap`) the services wait for, each service as its own principal, and no secret in
the file (every one from deploy/.env, listed in env.example)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from punte.stack import SERVICES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_three_kraft_nodes_with_scram_and_the_standard_authorizer():
    nodes = {n: s for n, s in COMPOSE["services"].items() if n.startswith("kafka-") and n != "kafka-setup"}
    assert sorted(nodes) == ["kafka-1", "kafka-2", "kafka-3"]
    assert {s["environment"]["NODE_ID"] for s in nodes.values()} == {"1", "2", "3"}
    assert all(s["image"].startswith("apache/kafka:4.") for s in nodes.values())
    script = (DEPLOY / "compose" / "kafka-broker.sh").read_text()
    for line in ("process.roles=broker,controller",
                 "controller.quorum.voters=1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093",
                 "listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
                 "sasl.enabled.mechanisms=SCRAM-SHA-512",
                 "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                 "super.users=User:admin", "allow.everyone.if.no.acl.found=false",
                 "auto.create.topics.enable=false", "default.replication.factor=3", "min.insync.replicas=2"):
        assert f"\n{line}\n" in script


def test_kafka_setup_applies_the_declaration_then_claims_the_epoch_before_the_services_start():
    script = (DEPLOY / "compose" / "kafka-setup.sh").read_text()
    assert script.index("punte kafka apply") < script.index("punte replay --bootstrap")
    for service in SERVICES:
        assert COMPOSE["services"][service]["depends_on"]["kafka-setup"] == {
            "condition": "service_completed_successfully"}


def test_every_service_is_its_own_principal_with_a_password_from_the_env_file():
    example = (DEPLOY / "env.example").read_text()
    for service in SERVICES:
        env = COMPOSE["services"][service]["environment"]
        assert env["PUNTE_SERVICE"] == service
        assert env["PUNTE_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["PUNTE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["PUNTE_KAFKA_USERNAME"] == f"punte-{service}"
        variable = f"PUNTE_{service.upper()}_KAFKA_PASSWORD"
        assert env["PUNTE_KAFKA_PASSWORD"].startswith("${" + variable + ":?")
        assert f"\n{variable}=\n" in example
        assert COMPOSE["services"]["kafka-setup"]["environment"][variable].startswith("${" + variable + ":?")


def test_no_secret_is_written_in_the_file():
    text = (DEPLOY / "compose.yaml").read_text()
    for variable in re.findall(r"\$\{(\w+):\?", text):
        assert f"\n{variable}=\n" in (DEPLOY / "env.example").read_text()
    assert "change-me" not in text
    assert not re.search(r"PASSWORD: (?!\$\{|\"\$\{)", text)
