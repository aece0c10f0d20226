"""The Python SDK (sdk/python, punte-sdk) against the whole network as processes, as an
institution's system would use it: its README's example as written (only the operator's
addresses, key file and secret replaced by the test network's), then refusals over Kafka
and over the HTTP gateway, each with the network's code and messages."""
from __future__ import annotations

import ast
import json
import re
import uuid
from typing import Any

import pytest

from contracts.kafka_acls import institution_user
from punte.stack import Stack
from punte_sdk import (
    Event,
    Gateway,
    GatewayRefused,
    InstitutionKey,
    Rejected,
    TokenRefused,
    VerificationKeys,
    fetch_intake_keys,
    sealed_report,
)
from punte_sdk.kafka import DeliveryReader, Sender
from tests.integration.helpers import ROOT

README = ROOT / "sdk" / "python" / "README.md"
INSTITUTION = "spas-colonesti"
# The README's example report, with a CNP whose check digit is wrong (INVALID_CNP).
WRONG_CNP = "6160514041232"
SERVICES = ("intake", "referral", "notification", "audit")

pytestmark = pytest.mark.e2e


def readme_example() -> str:
    """The first fenced Python block of the README's "## Example" section."""
    section = README.read_text(encoding="utf-8").split("\n## Example\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]


def with_values(code: str, values: dict[str, Any]) -> str:
    """``code`` with each top-level ``NAME = …`` assignment named in ``values`` (one line or
    several) replaced by ``NAME = <value>``; each must be there, or the README drifted."""
    lines = code.splitlines()
    found = {node.targets[0].id: node for node in ast.parse(code).body
             if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
    assert set(values) <= set(found), f"the README's example no longer sets {set(values) - set(found)}"
    for name in sorted(values, key=lambda n: found[n].lineno, reverse=True):
        node = found[name]
        lines[node.lineno - 1:node.end_lineno] = [f"{name} = {values[name]!r}"]
    return "\n".join(lines) + "\n"


def kafka_config(network: Stack) -> dict[str, Any]:
    """The client settings the operator gives an institution: on Apache Kafka (``--broker
    kafka``) the institution's own principal, whose ACLs allow its two topics and groups
    named ``<institution>.*``; on the embedded Tansu broker plain TCP, no idempotence (Tansu
    refuses InitProducerId) and a short session (Tansu holds a group's join for half of it:
    23 s at librdkafka's default of 45 s, 3 s here)."""
    if network.kafka is None:
        return {"bootstrap.servers": network.kafka_bootstrap, "enable.idempotence": False,
                "session.timeout.ms": 6000}
    user = institution_user(INSTITUTION)
    return {"bootstrap.servers": network.kafka_bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": network.kafka_credentials[user]}


def client_secret(network: Stack) -> str:
    return json.loads(network.state.passwords_file.read_text())[f"sys.{INSTITUTION}"]


def report(cnp: str = "6160514041231") -> dict[str, Any]:
    return {
        "reporter": {"institution": INSTITUTION, "role": "social-worker"}, "channel": "social-worker",
        "child": {"cnp": cnp, "given_name": "Ioana", "family_name": "Fictivu", "uat_siruta": 21891, "county": "BC"},
        "risks": [{"category": "neglect", "indicators": ["lipsește de acasă (date sintetice)"]}],
        "description": "Fata rămâne nesupravegheată (date sintetice).",
    }


@pytest.fixture
def gateway(network: Stack):
    with Gateway(network.url("intake"), network.url("identity"), INSTITUTION, client_secret(network)) as client:
        yield client


@pytest.mark.broker
def test_the_readme_example_runs_as_written_against_the_network(network: Stack, capsys):
    """Sealed, signed, sent over Kafka, the outcome read and verified with the network's
    published keys; then over the HTTP gateway, which intake joins to the same case (it
    opened both sealed parts: the same child)."""
    code = with_values(readme_example(), {
        "INSTITUTION": INSTITUTION,
        "KEY_FILE": str(network.state.institution_key_file(INSTITUTION)),
        "INTAKE_URL": network.url("intake"),
        "IDENTITY_URL": network.url("identity"),
        "CLIENT_SECRET": client_secret(network),
        "KAFKA": kafka_config(network),
    })
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 (the README's own example)
    outcome, answer = namespace["outcome"], namespace["answer"]
    assert outcome.accepted and outcome.case_id and outcome.subject_id == namespace["event"].id
    assert answer.accepted and answer.case_id == outcome.case_id and answer.merged
    printed = capsys.readouterr().out
    assert f"accepted: {outcome.case_id}" in printed and "merged" in printed


def test_the_network_publishes_one_set_of_verification_keys_on_every_service(network: Stack):
    keys = {service: VerificationKeys.fetch(network.url(service)).key_ids for service in SERVICES}
    assert len(set(map(tuple, keys.values()))) == 1 and keys["intake"], keys


@pytest.mark.broker
def test_a_report_refused_over_kafka_comes_back_signed_with_the_code_and_both_messages(network: Stack):
    key = InstitutionKey.load(network.state.institution_key_file(INSTITUTION))
    network_keys = VerificationKeys.fetch(network.url("intake"))
    event = key.sign(sealed_report(INSTITUTION, report(WRONG_CNP), fetch_intake_keys(network.url("intake"))))
    config = kafka_config(network)
    with DeliveryReader(INSTITUTION, network_keys, config, group_id=f"{INSTITUTION}.sdk-test") as reader, \
            Sender(INSTITUTION, config) as sender:
        sender.send(event)
        delivery = reader.wait_for(lambda d: d.is_outcome and d.data["subject_id"] == event.id)
        reader.commit()
    assert delivery.source == "/punte/intake" and delivery.key_id == network_keys.key_ids[0]
    outcome = delivery.outcome()
    assert outcome.status == "rejected" and outcome.reason is not None
    assert outcome.reason.code == "INVALID_CNP" and outcome.reason.message_ro and outcome.reason.message_en
    assert WRONG_CNP not in json.dumps(delivery.data), "no refusal repeats what was sent"
    with pytest.raises(Rejected) as raised:
        outcome.raise_if_rejected()
    assert raised.value.code == "INVALID_CNP"


def test_the_gateway_answers_binary_mode_with_form_authentication_once_per_event(network: Stack):
    key = InstitutionKey.load(network.state.institution_key_file(INSTITUTION))
    event = key.sign(sealed_report(INSTITUTION, report("5150412041230"), fetch_intake_keys(network.url("intake"))))
    with Gateway(network.url("intake"), network.url("identity"), INSTITUTION, client_secret(network),
                 client_auth="form") as client:
        first = client.submit(event, mode="binary")
        again = client.submit(event, mode="structured")
        later = client.outcome(event)
    assert first.accepted and first.subject_id == event.id
    assert again == first and later == first, "one event, one answer, however it is asked"


def test_the_gateway_raises_each_refusal_with_its_code(network: Stack, gateway: Gateway):
    key = InstitutionKey.load(network.state.institution_key_file(INSTITUTION))
    intake_keys = fetch_intake_keys(network.url("intake"))
    with pytest.raises(Rejected) as rejected:
        gateway.submit(key.sign(sealed_report(INSTITUTION, report(WRONG_CNP), intake_keys)))
    assert rejected.value.code == "INVALID_CNP" and rejected.value.message_ro != rejected.value.message_en
    # Another institution's event, under this institution's token: refused before any outcome.
    other = key.sign(Event.new("isj-bc", "ro.punte.report.submitted.v3", {"x": 1}, id=str(uuid.uuid4())))
    with pytest.raises(GatewayRefused) as refused:
        gateway.submit(other)
    assert (refused.value.status, refused.value.code) == (403, "SOURCE_MISMATCH")
    with pytest.raises(TokenRefused) as wrong_secret, \
            Gateway(network.url("intake"), network.url("identity"), INSTITUTION, "not-the-secret") as stranger:
        stranger.token()
    assert (wrong_secret.value.status, wrong_secret.value.error) == (401, "invalid_client")

