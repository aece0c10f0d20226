"""An institution's system written from docs/connecting.md alone (tests/e2e/independent_client.py:
confluent-kafka, cryptography, joserfc, httpx) against the network as processes: a sealed
report over Kafka and its verified outcome, the HTTP gateway in both modes with a token from
client credentials, the page's own examples run as written, and `punte conformance` in both
modes. The harness may use punte (to start the network, find its files); the client may not."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from punte.stack import Stack
from tests.doc_examples import ROOT, examples, http_request, python_namespace
from tests.e2e.independent_client import REPORT_V3, Institution, load_key_file

# Tansu only: the client connects without SASL (production settings are the page's, untested here).
pytestmark = [pytest.mark.e2e]
CLIENT = "cjrae-bc"  # the independent client's institution
SCRIPTED = "dsp-bc"  # the one the kit plays in its scripted mode
CNP = "5150412041230"  # synthetic, valid check digit
NETWORK_KEYS = "/.well-known/punte-network-keys.json"


def network_jwks(network: Stack) -> dict:
    """The network's verification keys as docs/connecting.md says to get them: the JWKS
    route, or on the embedded network keys/network.pub.json."""
    answer = httpx.get(network.url("intake") + NETWORK_KEYS, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def jwks(network: Stack) -> dict:
    return network_jwks(network)


def institution(network: Stack, institution_id: str) -> Institution:
    """The client as the operator's hand-over configures it: key file, broker, URLs."""
    runtime = json.loads(network.state.runtime_file.read_text())
    key_id, key = load_key_file(str(network.state.institution_key_file(institution_id)))
    return Institution(institution_id, key_id, key, runtime["kafka_bootstrap"], runtime["services"]["intake"],
                       runtime["services"]["identity"])


def secret_of(network: Stack, institution_id: str) -> str:
    return json.loads(network.state.passwords_file.read_text())[f"sys.{institution_id}"]


def punte(network: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNTE_")}
    env |= {"PYTHONPATH": str(ROOT), "COLUMNS": "220"}
    return subprocess.run([sys.executable, "-m", "punte.cli", *args, "--state-dir", str(network.state_dir)],
                          env=env, capture_output=True, text=True, timeout=300)


def test_a_sealed_report_over_kafka_is_answered_with_a_verified_outcome(network: Stack, jwks: dict):
    client = institution(network, CLIENT)
    sent = client.send(client.report(CNP))
    assert sent.offset >= 0
    answers = client.outcomes({sent.event_id}, jwks, group="outcomes")
    assert answers[sent.event_id]["status"] == "accepted", answers
    assert answers[sent.event_id]["subject_type"] == REPORT_V3


def test_a_message_without_ce_id_is_answered_by_its_position(network: Stack, jwks: dict):
    client = institution(network, CLIENT)
    signed = client.report(CNP)
    headless = type(signed)(signed.event_id, {k: v for k, v in signed.headers.items() if k != "ce_id"}, signed.body)
    sent = client.send(headless)
    position = f"@punte.ingress.{CLIENT}/{sent.partition}/{sent.offset}"
    answer = client.outcomes({position}, jwks, group="positions")[position]
    assert (answer["status"], answer["reason"]["code"]) == ("rejected", "MALFORMED_ENVELOPE")
    assert answer["subject_type"] == REPORT_V3  # its ce_type, as it had one


def test_the_http_gateway_takes_both_modes_with_a_token_from_client_credentials(network: Stack):
    client = institution(network, CLIENT)
    basic, form = (client.token(secret_of(network, CLIENT), method) for method in ("basic", "form"))
    binary = client.post_binary(basic, client.report(CNP))
    assert (binary.status_code, binary.json()["status"]) == (200, "accepted"), binary.text
    structured = client.post_structured(form, client.report(CNP))
    assert (structured.status_code, structured.json()["status"]) == (200, "accepted"), structured.text
    # Structured mode with `data`: signed over the compact serialisation the gateway makes again.
    event_id = str(uuid.uuid4())
    answer = client.post_structured(basic, client.compact(REPORT_V3, client.sealed_report(event_id, CNP), event_id),
                                    as_data=True)
    assert (answer.status_code, answer.json()["status"]) == (200, "accepted"), answer.text
    # Signed over pretty-printed JSON instead: the bytes the gateway checks differ.
    event_id = str(uuid.uuid4())
    data = client.sealed_report(event_id, CNP)
    pretty = client.sign(REPORT_V3, json.dumps(data, ensure_ascii=False, indent=2).encode(), event_id)
    refused = client.post_structured(basic, pretty, as_data=True)
    assert (refused.status_code, refused.json()["reason"]["code"]) == (422, "BAD_SIGNATURE"), refused.text
    later = client.post_binary(basic, client.report(CNP), wait=0)
    if later.status_code == 202:  # not answered within no time at all: the Location says where
        assert later.headers["Location"] == later.json()["location"]
        later = client.poll(basic, later.headers["Location"])
    assert (later.status_code, later.json()["status"]) == (200, "accepted"), later.text


def test_the_gateway_refuses_before_the_network_as_the_page_says_and_answers_a_repeat_the_same(network: Stack):
    client = institution(network, CLIENT)
    token = client.token(secret_of(network, CLIENT))
    message = client.report(CNP)
    first, again = client.post_binary(token, message), client.post_binary(token, message)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    url = client.intake_url + "/v1/events"
    headers = {f"ce-{k.removeprefix('ce_')}": v for k, v in client.report(CNP).headers.items() if k.startswith("ce_")}
    bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    cases = {
        "MALFORMED_ENVELOPE": (400, {k: v for k, v in headers.items() if k != "ce-time"} | bearer, b"{}"),
        "SOURCE_MISMATCH": (403, headers | {"ce-source": "/institutions/dsp-bc"} | bearer, b"{}"),
        "UNKNOWN_EVENT_TYPE": (400, headers | {"ce-type": "ro.punte.referral.command.v1"} | bearer, b"{}"),
        "MISSING_TOKEN": (401, headers | {"Content-Type": "application/json"}, b"{}"),
        "TOO_LARGE": (413, headers | bearer, b"{" + b" " * (300 * 1024) + b"}"),
    }
    for code, (status, sent, body) in cases.items():
        answer = httpx.post(url, headers=sent, content=body, timeout=60)
        assert answer.status_code == status, (code, answer.text)
        assert answer.json()["detail"]["code"] == code
        assert {"code", "message_ro", "message_en"} <= answer.json()["detail"].keys()
    structured = httpx.post(url, content=b'{"specversion": "1.0"}', timeout=60,
                            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/cloudevents+json"})
    assert (structured.status_code, structured.json()["detail"]["code"]) == (400, "MALFORMED_PAYLOAD")


def test_every_service_serves_the_networks_keys_without_a_token(network: Stack, jwks: dict):
    answers = {s: httpx.get(network.url(s) + NETWORK_KEYS, timeout=10) for s in ("intake", "referral", "notification",
                                                                                  "audit")}
    for answer in answers.values():
        assert answer.status_code == 200 and answer.json() == jwks
        assert "max-age=300" in answer.headers["Cache-Control"]
    assert jwks["keys"][0]["kid"] == json.loads(network.state.network_key_file.read_text())["key_id"]

def test_the_pages_examples_run_as_written_against_the_network(network: Stack, jwks: dict):
    """The Python and HTTP examples of docs/connecting.md, pasted into a program: key, seal,
    envelope, produce, consume with verification; a token and a report over HTTP."""
    code = python_namespace("load-key", "seal", "verify-delivery", "envelope", "produce", "consume")
    runtime = json.loads(network.state.runtime_file.read_text())
    intake, identity = runtime["services"]["intake"], runtime["services"]["identity"]
    key_id, key = code["load_signing_key"](str(network.state.institution_key_file(CLIENT)))
    intake_jwks = httpx.get(intake + "/.well-known/jwks.json").json()
    shown = examples()
    plaintext, report = json.loads(shown["sealed-plaintext"].text), json.loads(shown["report-v3"].text)
    event_id = str(uuid.uuid4())
    plaintext["report"] = {"id": event_id, "institution": CLIENT}
    report["reporter"]["institution"] = CLIENT
    report["sealed"] = code["seal"](plaintext, intake_jwks)
    body = json.dumps(report, ensure_ascii=False).encode()
    headers = code["envelope"](CLIENT, key_id, key, REPORT_V3, body, event_id=event_id)
    code["send"](runtime["kafka_bootstrap"], CLIENT, headers, body)
    outcome = code["outcome_of"](runtime["kafka_bootstrap"], CLIENT, event_id, jwks)
    assert outcome["status"] == "accepted", outcome

    # The token requests as shown, the secret filled in.
    secret = secret_of(network, CLIENT)
    form = http_request(shown["token-form"])
    answer = httpx.post(identity + form.target, headers=dict(form.headers[1:]),
                        content=form.body.replace("sys.isj-bc", f"sys.{CLIENT}").replace("<secret>", secret))
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    basic = http_request(shown["token-basic"])
    credentials = base64.b64encode(f"sys.{CLIENT}:{secret}".encode()).decode()
    answer = httpx.post(identity + basic.target, content=basic.body,
                        headers={**dict(basic.headers[1:]), "Authorization": f"Basic {credentials}"})
    assert answer.status_code == 200, answer.text

    # The binary-mode request as shown: its headers, this report's values.
    binary = http_request(shown["gateway-binary"])
    event_id = str(uuid.uuid4())
    plaintext["report"]["id"] = event_id
    report["sealed"] = code["seal"](plaintext, intake_jwks)
    body = json.dumps(report, ensure_ascii=False).encode()
    signed = code["envelope"](CLIENT, key_id, key, REPORT_V3, body, event_id=event_id)
    sent = {name: signed.get("ce_" + name.removeprefix("ce-"), value) for name, value in binary.headers[1:]}
    sent |= {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    answer = httpx.post(intake + binary.target, headers=sent, content=body, timeout=60)
    assert (answer.status_code, answer.json()["status"]) == (200, "accepted"), answer.text

    # The structured-mode request as shown: its members, this report's values.
    structured = http_request(shown["gateway-structured"])
    event_id = str(uuid.uuid4())
    plaintext["report"]["id"] = event_id
    report["sealed"] = code["seal"](plaintext, intake_jwks)
    body = json.dumps(report, ensure_ascii=False).encode()
    signed = code["envelope"](CLIENT, key_id, key, REPORT_V3, body, event_id=event_id)
    envelope = {name: signed.get("ce_" + name, value) for name, value in json.loads(structured.body).items()}
    envelope["data_base64"] = base64.b64encode(body).decode()
    answer = httpx.post(intake + structured.target, content=json.dumps(envelope).encode(), timeout=60,
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/cloudevents+json"})
    assert (answer.status_code, answer.json()["status"]) == (200, "accepted"), answer.text


def test_conformance_recorded_passes_what_the_client_sent_and_flags_a_padded_signature(network: Stack, jwks: dict):
    client = institution(network, CLIENT)
    first = client.send(client.report(CNP))
    last = client.send(client.report(CNP))
    client.outcomes({first.event_id, last.event_id}, jwks, group="recorded")
    done = punte(network, "conformance", "--institution", CLIENT, "--recorded", "--from-offset", str(first.offset),
                 "--json")
    found = json.loads(done.stdout)
    assert done.returncode == 0, [c for c in found["checks"] if not c["passed"]]
    assert {c["subject"].split()[1] for c in found["checks"]} == {first.event_id, last.event_id}

    good = client.report(CNP)
    broken = client.send(type(good)(good.event_id, good.headers | {"ce_signature": good.headers["ce_signature"] + "=="},
                                    good.body))
    done = punte(network, "conformance", "--institution", CLIENT, "--recorded", "--from-offset", str(broken.offset),
                 "--json")
    failed = {(c["rule"], c["section"]) for c in json.loads(done.stdout)["checks"] if not c["passed"]}
    assert done.returncode == 1
    assert ("signature verifies with the institution's key", "docs/connecting.md#signing-and-the-headers") in failed
    shown = punte(network, "conformance", "--institution", CLIENT, "--recorded", "--from-offset", str(broken.offset))
    assert "#signing-and-the-headers" in shown.stdout and shown.returncode == 1


def test_conformance_scripted_passes_against_the_network(network: Stack):
    # Without the report v2: its child's identity would travel in clear, and the end-to-end
    # network's leak scan holds that none rests on a topic (the probe is checked in
    # tests/unit/test_conformance.py).
    done = punte(network, "conformance", "--institution", SCRIPTED, "--no-clear-report", "--json")
    found = json.loads(done.stdout)
    failed = [c for c in found["checks"] if not c["passed"]]
    assert not failed, failed
    assert done.returncode == (1 if failed else 0)
    subjects = {c["subject"] for c in found["checks"]}
    assert {"report v3, sealed", "BAD_SIGNATURE: padded with =="} <= subjects
    assert all(c["passed"] for c in found["checks"] if c["rule"] == "outcome signed by the network")


def test_the_client_imports_nothing_of_punte():
    source = (Path(__file__).parent / "independent_client.py").read_text()
    imported = {line.split()[1].split(".")[0] for line in source.splitlines()
                if line.startswith(("import ", "from ")) and not line.startswith("from __future__")}
    assert not imported & {"runtime", "services", "punte", "contracts", "tests"}, imported
