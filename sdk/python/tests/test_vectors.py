"""The SDK against every shared test vector (contracts/test-vectors/): the network's own
code wrote them, the network's services and the Java SDK check them too, so the three
cannot drift. Pure and fast: no network, no broker."""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from joserfc import jwe
from joserfc.jwk import ECKey

from punte_sdk import (
    InstitutionKey,
    Refused,
    SignatureRefused,
    VerificationKeys,
    event_of,
    read_delivery,
    seal,
    sealed_report,
    signed_bytes,
    signing_input,
    structured_request,
)
from punte_sdk.signing import unb64url

# The repository's vectors; PUNTE_TEST_VECTORS points elsewhere (the SDK installed on its own).
VECTORS = Path(os.environ.get("PUNTE_TEST_VECTORS")
               or Path(__file__).resolve().parents[3] / "contracts" / "test-vectors")
# Every file of the vectors folder this suite checks (besides the README and the generator).
CHECKED = {"signing.json", "deliveries.json", "gateway.json", "sealing/intake-test-key.jwks",
           "sealing/vector.plaintext.json", "sealing/vector.jwe"}
SIGNING = json.loads((VECTORS / "signing.json").read_text(encoding="utf-8"))
DELIVERIES = json.loads((VECTORS / "deliveries.json").read_text(encoding="utf-8"))
GATEWAY = json.loads((VECTORS / "gateway.json").read_text(encoding="utf-8"))
SEALING = VECTORS / "sealing"
INTAKE_KEY = json.loads((SEALING / "intake-test-key.jwks").read_text(encoding="utf-8"))
PLAINTEXT = json.loads((SEALING / "vector.plaintext.json").read_text(encoding="utf-8"))
KEYS = {jwk["kid"]: InstitutionKey.from_jwk(jwk) for jwk in SIGNING["keys"]}
# The institution's public keys, as the network knows them, to check the refused cases with.
PUBLIC = VerificationKeys.from_jwks({"keys": [k.public_jwk() for k in KEYS.values()]})


def names(cases: list[dict]) -> list[str]:
    return [case["name"] for case in cases]


def as_record(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in headers.items()]


def test_every_vector_file_is_checked_here():
    """A vector file added to the folder fails this until the SDK checks it too; one dropped
    by mistake fails it rather than being checked no more."""
    present = {p.relative_to(VECTORS).as_posix() for p in VECTORS.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert present - {"README.md", "generate.py"} == CHECKED
    assert SIGNING["valid"] and SIGNING["refused"] and DELIVERIES["records"] and GATEWAY["structured"]


@pytest.mark.parametrize("case", SIGNING["valid"], ids=names(SIGNING["valid"]))
def test_the_sdk_writes_the_signing_input_and_signature_of_each_valid_case(case):
    headers, body = case["headers"], case["body"].encode("utf-8")
    key = KEYS[headers["ce_keyid"]]
    text = signing_input(headers["ce_id"], headers["ce_source"], headers["ce_type"], headers["ce_time"],
                         headers.get("ce_subject"), body, case["sigversion"])
    assert text == unb64url(case["signing_input"])
    # Built as the SDK builds an event, signed as it signs: the very signature (Ed25519 is
    # deterministic) and the very headers of the vector.
    event = event_of(as_record({k: v for k, v in headers.items()
                                if k not in ("ce_keyid", "ce_signature", "ce_sigversion")}), body)
    signed = key.sign(event, version=case["sigversion"])
    assert signed.signature == case["signature"]
    assert dict((k, v.decode()) for k, v in signed.kafka_headers()) == headers
    assert PUBLIC.verify_event(event_of(as_record(headers), body)) == headers["ce_keyid"]


@pytest.mark.parametrize("case", SIGNING["refused"], ids=names(SIGNING["refused"]))
def test_each_refused_case_is_refused_with_the_networks_code(case):
    with pytest.raises(SignatureRefused) as refused:
        PUBLIC.verify_event(event_of(as_record(case["headers"]), case["body"].encode("utf-8")))
    assert refused.value.code == case["code"]


def test_the_key_file_format_loads_the_same_key(tmp_path):
    """The operator's key file ({"key_id", "pem"}, PKCS#8) and the JWK are the same key."""
    key = next(iter(KEYS.values()))
    key.save(tmp_path / "spas-colonesti.key")
    loaded = InstitutionKey.load(tmp_path / "spas-colonesti.key")
    assert loaded.key_id == key.key_id and loaded.public_jwk() == key.public_jwk()
    assert json.loads((tmp_path / "spas-colonesti.key").read_text())["pem"].startswith("-----BEGIN PRIVATE KEY-----")


NETWORK = VerificationKeys.from_jwks(DELIVERIES["network_keys"])


@pytest.mark.parametrize("record", DELIVERIES["records"], ids=names(DELIVERIES["records"]))
def test_each_delivery_is_verified_and_decoded_or_refused_with_its_code(record):
    headers = [(k, v.encode()) for k, v in record["headers"]]
    value = record["value"].encode("utf-8")
    expect = record["expect"]
    if not expect["verified"]:
        with pytest.raises(Refused) as refused:
            read_delivery(NETWORK, headers, value)
        assert refused.value.code == expect["code"]
        return
    delivery = read_delivery(NETWORK, headers, value)
    seen = {"id": delivery.id, "source": delivery.source, "type": delivery.type, "time": delivery.time,
            "subject": delivery.subject, "data": delivery.data}
    assert seen == expect["event"]
    assert delivery.key_id == dict(record["headers"])["ce_keyid"]
    if delivery.is_outcome:
        outcome = delivery.outcome()
        assert outcome.subject_id == expect["event"]["data"]["subject_id"]
        if outcome.reason is not None:  # the rejected one carries both languages
            assert outcome.reason.message_ro and outcome.reason.message_en


def test_the_network_keys_are_read_current_first_and_nothing_else_is_trusted():
    assert NETWORK.key_ids == [k["kid"] for k in DELIVERIES["network_keys"]["keys"]]
    other = {"kty": "EC", "crv": "P-256", "kid": "enc-1", "use": "enc", "x": "AA", "y": "AA"}
    keys = VerificationKeys.from_jwks({"keys": [other, *DELIVERIES["network_keys"]["keys"]]})
    assert keys.key_ids == NETWORK.key_ids


@pytest.mark.parametrize("case", GATEWAY["structured"], ids=names(GATEWAY["structured"]))
def test_the_gateway_structured_request_is_signed_over_the_vectors_bytes(case):
    assert signed_bytes(case["request"]) == case["signed_body"].encode("utf-8")


@pytest.mark.parametrize("case", GATEWAY["structured"], ids=names(GATEWAY["structured"]))
def test_the_sdks_own_structured_request_carries_exactly_the_signed_bytes(case):
    """The SDK sends data_base64, so what the gateway verifies is what was signed, whatever
    spacing the body has."""
    request = json.loads(case["request"])
    body = case["signed_body"].encode("utf-8")
    headers = {f"ce_{k}": str(request[k]) for k in ("specversion", "id", "source", "type", "time", "subject")}
    headers["content-type"] = "application/json"
    event = next(iter(KEYS.values())).sign(event_of(as_record(headers), body))
    sent = structured_request(event)
    assert signed_bytes(sent) == body and base64.b64decode(sent["data_base64"]) == body
    assert {k: sent[k] for k in ("id", "source", "type", "time", "subject", "keyid", "signature")} == {
        "id": request["id"], "source": request["source"], "type": request["type"], "time": request["time"],
        "subject": request["subject"], "keyid": event.keyid, "signature": event.signature}
    assert PUBLIC.verify(id=sent["id"], source=sent["source"], type=sent["type"], time=sent["time"],
                         subject=sent["subject"], body=signed_bytes(sent), keyid=sent["keyid"],
                         signature=sent["signature"], sigversion=sent["sigversion"])


def open_with_the_vector_key(token: str) -> tuple[dict, dict]:
    """(protected header, plaintext) of a JWE, opened with intake's test key (joserfc)."""
    private = ECKey.import_key(INTAKE_KEY["keys"][0])
    opened = jwe.decrypt_compact(token, private)
    return dict(opened.protected), json.loads(opened.plaintext)


def test_the_vector_jwe_opens_to_the_vector_plaintext():
    header, plaintext = open_with_the_vector_key((SEALING / "vector.jwe").read_text().strip())
    assert (header["alg"], header["enc"], header["kid"]) == ("ECDH-ES+A256KW", "A256GCM", "intake-test-1")
    assert plaintext == PLAINTEXT


def test_the_sdks_sealing_of_the_vector_plaintext_opens_to_it_with_the_vector_key():
    token = seal(PLAINTEXT, INTAKE_KEY)
    header, plaintext = open_with_the_vector_key(token)
    assert (header["alg"], header["enc"], header["kid"]) == ("ECDH-ES+A256KW", "A256GCM", "intake-test-1")
    assert plaintext == PLAINTEXT
    assert token != seal(PLAINTEXT, INTAKE_KEY), "ECDH-ES is randomised: each sealing differs"


def test_a_sealed_report_keeps_only_routing_in_clear_and_binds_the_sealed_part():
    report = {
        "reporter": {"institution": "spas-colonesti", "role": "social-worker"}, "channel": "social-worker",
        "child": {**PLAINTEXT["child"], "uat_siruta": 21891, "county": "BC"},
        "risks": [{"category": "neglect", "indicators": PLAINTEXT["indicators"]["neglect"]}],
        "description": PLAINTEXT["description"], "immediate_danger": False,
    }
    event = sealed_report("spas-colonesti", report, INTAKE_KEY)
    clear = event.data
    assert event.type == "ro.punte.report.submitted.v3" and event.source == "/institutions/spas-colonesti"
    assert set(clear) == {"reporter", "channel", "child", "risks", "immediate_danger", "sealed"}
    assert clear["child"] == {"uat_siruta": 21891, "county": "BC"} and clear["risks"] == [{"category": "neglect"}]
    for secret in ("6160514041231", "Probescu", "Colonești nr. 7", "Vecinii", "haine"):
        assert secret.encode() not in event.body
    _, plaintext = open_with_the_vector_key(clear["sealed"])
    assert plaintext == {**PLAINTEXT, "report": {"id": event.id, "institution": "spas-colonesti"}}


def test_a_field_the_sdk_does_not_know_is_refused_not_dropped_nor_left_in_clear():
    with pytest.raises(ValueError, match="childs_phone"):
        sealed_report("spas-colonesti", {"childs_phone": "0700000000", "child": {}, "risks": [],
                                         "description": "x"}, INTAKE_KEY)


def test_only_intakes_first_key_is_sealed_to():
    older = {**INTAKE_KEY["keys"][0], "kid": "intake-test-0"}
    assert open_with_the_vector_key(seal(PLAINTEXT, {"keys": [INTAKE_KEY["keys"][0], older]}))[0]["kid"] == \
        "intake-test-1"
    with pytest.raises(ValueError):
        seal(PLAINTEXT, {"keys": [{**INTAKE_KEY["keys"][0], "use": "sig"}, older]})
