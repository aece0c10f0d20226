"""The Java SDK (sdk/java) as an institution's system uses it, against the whole network:
its example program seals a synthetic report to intake's published key, signs it, sends it
over Kafka, reads its outcome on the delivery topic, verifies it with the network's keys
and prints it. Skipped where Maven or a JDK is missing, except under CI, where it fails."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from punte.stack import Stack
from runtime.signing import SigningKey, b64url

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


def network_keys(network: Stack, folder: Path) -> str:
    """Where the network's verification keys are: the JWKS route every service serves, or,
    on a network from before that route, the same JWKS written from the network's key."""
    url = network.url("intake")
    if httpx.get(url + NETWORK_KEYS_PATH).status_code == 200:
        return url
    key = SigningKey.load(network.state.network_key_file)
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64url(key.public_raw()), "kid": key.key_id,
                      "use": "sig", "alg": "EdDSA"}]}
    path = folder / "punte-network-keys.json"
    path.write_text(json.dumps(jwks))
    return str(path)


def kafka_settings(network: Stack) -> list[str]:
    """The Kafka clients' settings of the institution's system: on Apache Kafka its own
    principal (SASL/SCRAM), whose ACLs allow its two topics and its `<id>.` groups only; the
    embedded Tansu answers InitProducerId with an error, so no idempotent producer there."""
    if network.broker_kind != "kafka":
        return ["enable.idempotence=false"]
    login = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
             f'username="{INSTITUTION}" password="{network.kafka_credentials[INSTITUTION]}";')
    return ["security.protocol=SASL_PLAINTEXT", "sasl.mechanism=SCRAM-SHA-512", f"sasl.jaas.config={login}"]


@pytest.mark.broker
def test_the_java_sdk_example_sends_a_sealed_report_and_reads_its_verified_outcome(
        network: Stack, sdk_classpath: str, tmp_path: Path):
    kafka = kafka_settings(network)
    ran = subprocess.run(
        ["java", "-cp", sdk_classpath, "ro.punte.sdk.examples.SendReport", network.kafka_bootstrap, INSTITUTION,
         str(network.state.institution_key_file(INSTITUTION)), network.url("intake"),
         network_keys(network, tmp_path), *kafka],
        capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    outcome = json.loads(ran.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "accepted", outcome
    assert outcome["subject_type"] == "ro.punte.report.submitted.v3"
    # The answer to the report it sent ("sent <ce_id> to <topic>" on its standard error).
    sent = next(line.split()[1] for line in ran.stderr.splitlines() if line.startswith("sent "))
    assert outcome["subject_id"] == sent


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
