"""docs/connecting.md, "Connecting your system", read as an institution's developer would
read it: each example (a fenced block named ``example=…``) is run or parsed, and checked
against what the network does. Pure: files, the identity app in-process, no broker."""
from __future__ import annotations

import base64
import inspect
import json
import re
import textwrap
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from contracts import kafka_acls
from contracts.reference import rejection_codes, topic_partitions
from contracts.refusals import reason
from punte.accounts import load_accounts
from punte.identity import create_app
from punte.state import State
from runtime.cloudevents import RFC_3339, CloudEvent, decode
from runtime.inbox import Message
from runtime.kafka import MECHANISMS, PROTOCOLS
from runtime.settings import Settings
from runtime.signing import Keyring, SigningKey, b64url
from runtime.tokens import TokenIssuer
from tests.doc_examples import (
    CONNECTING,
    ROOT,
    anchors,
    examples,
    http_request,
    python_namespace,
    table_after,
)

INSTITUTION = "isj-bc"
SCHEMAS = ROOT / "contracts" / "schemas"
TEST_INTAKE_KEYS = ROOT / "contracts" / "test-vectors" / "sealing" / "intake-test-key.jwks"
EXAMPLES = examples()
DOC = CONNECTING.read_text(encoding="utf-8")


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / f"{name}.json").read_text()), format_checker=FormatChecker())


def example_json(name: str) -> dict:
    return json.loads(EXAMPLES[name].text)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> State:
    """A state folder as `punte up` makes it (files only)."""
    return State(tmp_path_factory.mktemp("connecting") / "state").prepare()


# --- what the operator gives you ----------------------------------------------------------

def test_the_key_file_is_where_and_as_the_page_says_and_loads_with_cryptography_alone(state: State):
    path = state.institution_key_file(INSTITUTION)
    assert path == state.root / "keys" / "institutions" / f"{INSTITUTION}.key"
    assert "`<state>/keys/institutions/<id>.key`" in DOC
    stored, shown = json.loads(path.read_text()), example_json("key-file")
    assert stored.keys() == shown.keys()
    assert stored["key_id"] == shown["key_id"] == f"{INSTITUTION}-1"  # `<id>-1` on the embedded network
    assert stored["pem"].startswith("-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted
    assert path.stat().st_mode & 0o777 == 0o600
    key_id, key = python_namespace("load-key")["load_signing_key"](str(path))
    public = Keyring.load(state.keyring_file).public_keys_of(INSTITUTION)
    assert key_id == shown["key_id"]
    assert public == [key.public_key().public_bytes_raw()]


def test_the_system_signs_in_as_sys_institution_with_the_secret_the_operator_keeps(state: State):
    account = load_accounts(state.accounts_file)[f"sys.{INSTITUTION}"]
    assert account.institution == INSTITUTION and account.roles == ["institution-system"]
    assert f"sys.{INSTITUTION}" in json.loads(state.passwords_file.read_text())
    assert "client id `sys.<id>`, its secret in `<state>/demo-passwords.json`" in DOC


def test_the_broker_address_is_the_key_punte_up_writes():
    from punte.stack import Stack
    shown = example_json("runtime-json")
    written = inspect.getsource(Stack.start)
    assert '"kafka_bootstrap": self.kafka_bootstrap' in written and '"services":' in written
    assert set(shown) == {"services", "kafka_bootstrap"}
    assert re.fullmatch(r"127\.0\.0\.1:\d+", shown["kafka_bootstrap"])


def test_the_production_settings_are_the_principal_and_mechanism_the_acls_use():
    config = python_namespace("production-config")["config"]
    assert config["security.protocol"] in PROTOCOLS and config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] in MECHANISMS and config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["sasl.username"] == kafka_acls.institution_user(INSTITUTION)
    assert "SCRAM-SHA-512" in (ROOT / "docs" / "kafka-acls.md").read_text()


# --- the network's keys ---------------------------------------------------------------------

def network_jwks(key: SigningKey) -> dict:
    """The JWKS as the page describes it (RFC 8037: kty OKP, crv Ed25519, x the raw key)."""
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64url(key.public_raw()), "kid": key.key_id,
                      "use": "sig", "alg": "EdDSA"}]}


def test_the_network_jwks_has_the_shape_and_key_id_shown(state: State):
    [shown] = example_json("network-jwks")["keys"]
    network = SigningKey.load(state.network_key_file)
    assert shown.keys() == network_jwks(network)["keys"][0].keys()
    assert {k: shown[k] for k in ("kty", "crv", "use", "alg")} == {"kty": "OKP", "crv": "Ed25519", "use": "sig",
                                                                   "alg": "EdDSA"}
    assert shown["kid"] == network.key_id == "punte-network-1"
    assert len(base64.urlsafe_b64decode(shown["x"] + "=")) == 32


def test_the_public_network_keyring_of_the_state_folder(state: State):
    network = SigningKey.load(state.network_key_file)
    assert json.loads((state.keys / "network.pub.json").read_text()) == network_jwks(network)
    assert "the same JWKS is in `<state>/keys/network.pub.json`" in DOC


def test_a_delivery_verifies_with_the_page_code_and_a_changed_one_does_not(state: State):
    network = SigningKey.load(state.network_key_file)
    outcome = network.sign(CloudEvent.new("ro.punte.outcome.v1", "/punte/intake",
                                          example_json("outcome-accepted"), subject="case-1"))
    headers = {k: v.decode() for k, v in outcome.headers()}
    verify = python_namespace("verify-delivery")["verify_delivery"]
    jwks = network_jwks(network)
    assert verify(jwks, headers, outcome.body())
    assert not verify(jwks, headers, outcome.body().replace(b"accepted", b"rejected"))
    assert not verify(jwks, headers | {"ce_subject": "case-2"}, outcome.body())
    assert not verify(jwks, headers | {"ce_source": "/institutions/isj-bc"}, outcome.body())
    assert not verify(network_jwks(SigningKey.generate(network.key_id)), headers, outcome.body())


# --- topics, sizes ----------------------------------------------------------------------------

def test_the_topic_table_has_the_declared_partitions():
    rows = table_after("## Topics, groups, partitions and ordering")
    shown = {row[0].strip("`").replace("<id>", INSTITUTION): int(row[2]) for row in rows}
    declared = dict(topic_partitions([INSTITUTION]))
    assert shown == {name: declared[name] for name in shown}
    assert set(shown) == {f"punte.ingress.{INSTITUTION}", f"punte.delivery.{INSTITUTION}", "punte.audit"}


def test_what_the_table_says_you_do_with_each_topic_and_group_is_what_the_acls_grant():
    rows = table_after("## Topics, groups, partitions and ordering")
    shown = {(row[0].strip("`").replace("<id>", INSTITUTION), row[1].upper()) for row in rows}
    granted = {(g.name, g.operation) for g in kafka_acls.grants_of(INSTITUTION, [INSTITUTION, "dsp-bc"])}
    assert shown | {(f"{INSTITUTION}.", "READ")} == granted  # the group: READ on the prefix `<id>.`
    assert kafka_acls.institution_group_prefix(INSTITUTION) == f"{INSTITUTION}."
    assert "name yours `<id>.<anything>`, for example `isj-bc.outcomes`" in DOC
    consume = EXAMPLES["consume"].text
    assert '"group.id": f"{institution}.outcomes"' in consume and '"session.timeout.ms": 6000' in consume


def test_the_size_limit_is_the_receivers():
    assert "**256 KiB** (262 144 bytes)" in DOC
    settings = Settings()
    assert settings.http_max_body_bytes == 256 * 1024
    assert settings.ingress_max_message_bytes == 256 * 1024


# --- sending -----------------------------------------------------------------------------------

def test_a_report_built_as_the_page_says_is_sealed_signed_and_valid(state: State):
    code = python_namespace("load-key", "seal", "envelope")
    key_id, key = code["load_signing_key"](str(state.institution_key_file(INSTITUTION)))
    intake_jwks = json.loads(TEST_INTAKE_KEYS.read_text())
    plaintext, report = example_json("sealed-plaintext"), example_json("report-v3")
    assert schema("ro.punte.report.sealed.v3").is_valid(plaintext)
    report["sealed"] = code["seal"](plaintext, intake_jwks)
    assert schema("ro.punte.report.submitted.v3").is_valid(report)
    body = json.dumps(report, ensure_ascii=False).encode()
    headers = code["envelope"](INSTITUTION, key_id, key, "ro.punte.report.submitted.v3", body,
                               event_id=plaintext["report"]["id"])
    assert schema("cloudevents-binary-kafka").is_valid(headers)
    assert RFC_3339.fullmatch(headers["ce_time"]) and len(headers["ce_signature"]) == 86
    event = decode([(k, v.encode()) for k, v in headers.items()], body)
    Keyring.load(state.keyring_file).verify_event(INSTITUTION, event, body)
    from joserfc import jwe
    from joserfc.jwk import KeySet
    opened = jwe.decrypt_compact(report["sealed"], KeySet.import_key_set(intake_jwks))
    assert json.loads(opened.plaintext) == plaintext


def test_the_produce_example_keys_by_ce_id_on_the_ingress_topic():
    produce = EXAMPLES["produce"].text
    assert 'f"punte.ingress.{institution}"' in produce and 'key=headers["ce_id"]' in produce


# --- the outcome ---------------------------------------------------------------------------------

def test_the_outcomes_shown_are_valid_and_an_unreadable_message_is_answered_by_position():
    outcome = schema("ro.punte.outcome.v1")
    accepted, unreadable = example_json("outcome-accepted"), example_json("outcome-unreadable")
    assert outcome.is_valid(accepted) and outcome.is_valid(unreadable)
    assert accepted["subject_id"] == example_json("sealed-plaintext")["report"]["id"]
    message = Message(f"punte.ingress.{INSTITUTION}", 0, 42, None, b"{}", (), 0)
    assert unreadable["subject_id"] == f"@{message.position}"
    from runtime import ingress
    assert 'f"@{message.position}"' in inspect.getsource(ingress.reply)
    code = unreadable["reason"]["code"]
    detail = unreadable["reason"]["message_en"].rsplit("(", 1)[1].rstrip(")")
    assert unreadable["reason"] == reason(code, detail)
    with pytest.raises(Exception, match=detail):  # what decode says of a record without ce_id
        decode([(k, v) for k, v in CloudEvent.new("t", "/s", {}).headers() if k != "ce_id"], b"{}")


# --- the HTTP gateway --------------------------------------------------------------------------

def test_the_discovery_document_names_the_token_endpoint_and_both_client_authentications():
    issuer = TokenIssuer("http://127.0.0.1:8400", SigningKey.generate("identity-1"))
    shown, served = example_json("discovery"), issuer.discovery()
    assert shown == {k: served[k] for k in shown}


def token_request(name: str, secret: str) -> tuple[dict[str, str], str]:
    request = http_request(EXAMPLES[name])
    assert (request.method, request.target) == ("POST", "/token")
    headers = dict(request.headers)
    if "Authorization" in headers:
        pair = re.fullmatch(r'Basic <base64 of "(.+):<secret>">', headers["Authorization"])
        assert pair, headers["Authorization"]
        headers["Authorization"] = "Basic " + base64.b64encode(f"{pair[1]}:{secret}".encode()).decode()
    return headers, request.body.replace("<secret>", secret)


@pytest.mark.parametrize("name", ["token-form", "token-basic"])
async def test_each_token_request_shown_gets_a_token(state: State, name: str):
    issuer = TokenIssuer("http://127.0.0.1:8400", SigningKey.generate("identity-1"))
    app = create_app(issuer, load_accounts(state.accounts_file))
    secret = json.loads(state.passwords_file.read_text())[f"sys.{INSTITUTION}"]
    headers, body = token_request(name, secret)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8400") as client:
        answer = await client.post("/token", headers=headers, content=body)
        wrong_headers, wrong_body = token_request(name, secret + "x")
        wrong = await client.post("/token", headers=wrong_headers, content=wrong_body)
        both = await client.post("/token", headers=token_request("token-basic", secret)[0],
                                 content=token_request("token-form", secret)[1])
    assert answer.status_code == 200, answer.text
    assert answer.json().keys() == example_json("token-answer").keys()
    assert answer.json()["token_type"] == "Bearer"
    assert (wrong.status_code, wrong.json()["error"], wrong.headers["WWW-Authenticate"].split()[0]) == (
        401, "invalid_client", "Basic")
    assert (both.status_code, both.json()["error"]) == (400, "invalid_request")


def test_binary_mode_carries_every_attribute_as_a_ce_header():
    from runtime.cloudevents import REQUIRED
    request = http_request(EXAMPLES["gateway-binary"])
    names = [name.lower() for name, _ in request.headers]
    assert {f"ce-{a.removeprefix('ce_')}" for a in REQUIRED} | {"ce-keyid", "ce-signature", "ce-sigversion"} <= set(names)
    assert dict(request.headers)["Content-Type"] == "application/json"
    assert (request.method, request.target) == ("POST", "/v1/events?wait=10")


def test_structured_mode_signs_data_base64_as_sent_and_data_as_compact_json():
    from services.intake.entrypoints.http import ATTRIBUTES, STRUCTURED, _structured
    request = http_request(EXAMPLES["gateway-structured"])
    assert dict(request.headers)["Content-Type"] == STRUCTURED
    shown = json.loads(request.body)
    assert set(ATTRIBUTES) | {"keyid", "signature", "sigversion", "data_base64"} <= shown.keys()
    data = {"child": {"uat_siruta": 21891}, "description": "Școala spune: „absențe”", "n": 1}
    signed = json.dumps(data, ensure_ascii=True, indent=1).encode()  # any bytes, as sent
    envelope = {k: v for k, v in shown.items() if k != "data_base64"}
    assert _structured(json.dumps(envelope | {"data_base64": base64.b64encode(signed).decode()}).encode())[1] == signed
    as_documented = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert _structured(json.dumps(envelope | {"data": data}).encode())[1] == as_documented
    assert 'json.dumps(data, ensure_ascii=False, separators=(",", ":"))' in DOC


def test_the_wait_and_the_202_answer_are_the_gateways():
    from services.intake.entrypoints.http import submit
    wait = inspect.signature(submit).parameters["wait"].default
    bounds = {type(m).__name__: m for m in wait.metadata}
    assert (wait.default, bounds["Ge"].ge, bounds["Le"].le) == (10, 0, 30)
    assert "`?wait=` says how many seconds (0 to 30, default 10)" in DOC
    shown = example_json("answer-202")
    source, event_id = f"/institutions/{INSTITUTION}", example_json("sealed-plaintext")["report"]["id"]
    assert shown == {"status": "processing",
                     "location": "/v1/events/outcome?" + urlencode({"source": source, "id": event_id})}


# --- refusals, sections, links ----------------------------------------------------------------

def test_every_rejection_code_has_one_row_with_an_input():
    rows = table_after("## Refusals, and what causes each")
    codes = [row[0].strip("`") for row in rows]
    assert sorted(codes) == sorted(rejection_codes()) and len(codes) == len(set(codes))
    assert all(len(row) == 3 and row[1] in {"outcome", "HTTP", "outcome, HTTP"} and row[2] for row in rows)
    # What the kit sends comes back in an outcome.
    assert all("outcome" in row[1] for row in rows if "*kit*" in row[2])


def test_every_link_of_the_page_leads_somewhere():
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", DOC):
        path = (CONNECTING.parent / target).resolve() if target else CONNECTING
        assert path.exists(), target
        if anchor:
            assert anchor in anchors(path), f"{target}#{anchor}"


def test_the_sections_the_conformance_kit_points_to_exist():
    from punte.conformance import SECTIONS
    assert set(SECTIONS.values()) <= anchors(CONNECTING)


def test_the_sdk_sections_say_where_the_sdks_live():
    assert {"python-sdk", "java-sdk"} <= anchors(CONNECTING)
    assert "`sdk/python`" in DOC and "`sdk/java`" in DOC


def fenced(path: Path, section: str, language: str) -> str:
    """The first ```language block after the heading ``section`` of ``path``."""
    after = path.read_text(encoding="utf-8").split(f"\n{section}\n", 1)[1]
    return re.search(rf"```{language}\n(.*?)```", after, re.DOTALL).group(1)  # type: ignore[union-attr]


def test_the_python_sdk_example_is_the_one_its_end_to_end_test_runs():
    """tests/e2e/test_sdk_python.py runs the README's block against a network."""
    assert EXAMPLES["sdk-python"].text == fenced(ROOT / "sdk" / "python" / "README.md", "## Example", "python")


def test_the_java_sdk_example_is_the_one_the_sdks_build_compiles():
    """The block as sdk/java/README.md has it, and, its imports aside, line for line the body
    of ReadmeExample.java, which `mvn package` (make test) compiles with the SDK's tests."""
    shown = EXAMPLES["sdk-java"].text
    assert shown == fenced(ROOT / "sdk" / "java" / "README.md", "## Send a report over Kafka and read its outcome",
                           "java")
    source = (ROOT / "sdk" / "java" / "src" / "test" / "java" / "ro" / "punte" / "sdk" / "ReadmeExample.java").read_text()
    compiled = source.split("// README example: begin\n", 1)[1].split("        // README example: end", 1)[0]
    imports = [line for line in shown.splitlines() if line.startswith("import ")]
    statements = "\n".join(line for line in shown.splitlines() if not line.startswith("import ")).strip("\n")
    assert all(f"\n{line}\n" in source for line in imports)
    assert textwrap.dedent(compiled).strip("\n") == statements


def test_every_example_is_checked_here():
    source = Path(__file__).read_text()
    assert all(f'"{name}"' in source for name in EXAMPLES), [n for n in EXAMPLES if f'"{n}"' not in source]
