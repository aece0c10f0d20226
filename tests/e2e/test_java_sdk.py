"""The Java SDK (sdk/java) as an institution's system uses it, against the whole network:
its example program seals a synthetic report to intake's published key, signs it, sends it
over Kafka, reads its outcome on the delivery topic, verifies it with the network's keys
and prints it. Skipped where Maven or a JDK is missing, except under CI, where it fails."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from punte.stack import Stack

pytestmark = [pytest.mark.e2e]
SDK = Path(__file__).resolve().parents[2] / "sdk" / "java"
JAR = SDK / "target" / "punte-sdk-0.1.0.jar"
INSTITUTION = "spas-colonesti"
NETWORK_KEYS_PATH = "/.well-known/punte-network-keys.json"


@pytest.fixture(scope="module")
def sdk_classpath() -> str:
    """The SDK's jar and its dependencies (`mvn package`: target/ and target/lib/)."""
    missing = [tool for tool in ("mvn", "javac", "java") if shutil.which(tool) is None]
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"the Java SDK needs {', '.join(missing)} (apt-get install openjdk-17-jdk-headless maven)")
    built = subprocess.run(["mvn", "-q", "-B", "-f", str(SDK), "package", "-DskipTests"],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    return f"{JAR}{os.pathsep}{SDK / 'target' / 'lib' / '*'}"


def network_keys(network: Stack) -> str:
    """Where the network's verification keys are: the JWKS route every service serves."""
    url = network.url("intake")
    assert httpx.get(url + NETWORK_KEYS_PATH).status_code == 200
    return url


def kafka_settings(network: Stack) -> list[str]:
    """The Kafka clients' settings of the institution's system: on Apache Kafka its own
    principal (SASL/SCRAM), whose ACLs allow its two topics and its `<id>.` groups only; the
    embedded Tansu answers InitProducerId with an error, so no idempotent producer there, and
    it answers a new group member after half its session timeout: about 3 s at 6 s, 23 s at
    the Java client's 45 s (sdk/java/README.md)."""
    if network.broker_kind != "kafka":
        return ["enable.idempotence=false", "session.timeout.ms=6000"]
    login = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
             f'username="{INSTITUTION}" password="{network.kafka_credentials[INSTITUTION]}";')
    return ["security.protocol=SASL_PLAINTEXT", "sasl.mechanism=SCRAM-SHA-512", f"sasl.jaas.config={login}"]


def send_report(network: Stack, sdk_classpath: str) -> tuple[str, dict]:
    """SendReport's run: the ce_id it sent ("sent <ce_id> to <topic>" on its standard error)
    and the outcome it printed."""
    ran = subprocess.run(
        ["java", "-cp", sdk_classpath, "ro.punte.sdk.examples.SendReport", network.kafka_bootstrap, INSTITUTION,
         str(network.state.institution_key_file(INSTITUTION)), network.url("intake"),
         network_keys(network), *kafka_settings(network)],
        capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    sent = next(line.split()[1] for line in ran.stderr.splitlines() if line.startswith("sent "))
    return sent, json.loads(ran.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sent_over_kafka(network: Stack, sdk_classpath: str) -> tuple[str, dict]:
    """One run of SendReport for the module's two tests (each run starts a JVM and joins a
    consumer group)."""
    return send_report(network, sdk_classpath)


@pytest.mark.broker
def test_the_java_sdk_example_sends_a_sealed_report_and_reads_its_verified_outcome(
        sent_over_kafka: tuple[str, dict]):
    sent, outcome = sent_over_kafka
    assert outcome["status"] == "accepted", outcome
    assert outcome["subject_type"] == "ro.punte.report.submitted.v3"
    assert outcome["subject_id"] == sent  # the answer to the report it sent


def test_what_the_java_sdk_sent_passes_the_conformance_kit(network: Stack, sent_over_kafka: tuple[str, dict]):
    """The issue's bar: a client built on the Java SDK passes `punte conformance` (recorded
    mode: its message checked against the contract, and the network's answer to it)."""
    sent, _ = sent_over_kafka
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNTE_")} | {"COLUMNS": "220"}
    done = subprocess.run([sys.executable, "-m", "punte.cli", "conformance", "--institution", INSTITUTION,
                           "--recorded", "--last", "1", "--json", "--state-dir", str(network.state_dir)],
                          env=env, capture_output=True, text=True, timeout=300)
    found = json.loads(done.stdout)
    assert done.returncode == 0, [c for c in found["checks"] if not c["passed"]]
    assert {c["subject"].split()[1] for c in found["checks"]} == {sent}


def test_the_java_sdk_submits_a_sealed_report_over_the_http_gateway(
        network: Stack, sdk_classpath: str):
    # The institution's system account: client credentials, authenticated with HTTP Basic.
    secret = json.loads(network.state.passwords_file.read_text())[f"sys.{INSTITUTION}"]
    ran = subprocess.run(
        ["java", "-cp", sdk_classpath, "ro.punte.sdk.examples.SubmitOverHttp", network.url("intake"),
         network.url("identity"), INSTITUTION, str(network.state.institution_key_file(INSTITUTION))],
        capture_output=True, text=True, timeout=180, env={**os.environ, "PUNTE_CLIENT_SECRET": secret})
    assert ran.returncode == 0, ran.stdout + ran.stderr
    outcome = json.loads(ran.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "accepted", outcome
    assert outcome["subject_type"] == "ro.punte.report.submitted.v3"


def test_the_gateway_refusal_reaches_the_java_caller_with_its_code(network: Stack, sdk_classpath: str):
    # A wrong secret: the token endpoint's refusal, as the SDK's exception carries it.
    ran = subprocess.run(
        ["java", "-cp", sdk_classpath, "ro.punte.sdk.examples.SubmitOverHttp", network.url("intake"),
         network.url("identity"), INSTITUTION, str(network.state.institution_key_file(INSTITUTION))],
        capture_output=True, text=True, timeout=180, env={**os.environ, "PUNTE_CLIENT_SECRET": "not-the-secret"})
    assert ran.returncode == 3, ran.stdout + ran.stderr
    assert ran.stderr.startswith("invalid_client (HTTP 401)"), ran.stderr
