"""The conformance kit's own rules, without a network: its probes break exactly the rule
they name (checked with the receiver's own authentication), and the recorded mode passes a
good message and flags a broken one with the section of docs/connecting.md it breaks."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from contracts.refusals import Refused
from punte.conformance import (
    ACCEPTED,
    SECTIONS,
    Answer,
    Probes,
    Record,
    check_recorded,
    padded,
    public_keyring,
    read_answer,
)
from runtime.cloudevents import CloudEvent
from runtime.inbox import Message
from runtime.ingress import authenticate
from runtime.signing import NETWORK, Keyring, PublicKey, SigningKey

INSTITUTION = "isj-bc"
KEY = SigningKey.generate(f"{INSTITUTION}-1")
KEYRING = public_keyring(INSTITUTION, KEY)
NETWORK_KEY = SigningKey.generate("punte-network-1")
NETWORK_KEYS = Keyring([PublicKey(NETWORK_KEY.key_id, NETWORK, NETWORK_KEY.public_raw(),
                                  datetime.min.replace(tzinfo=timezone.utc), None)])
INTAKE_KEYS = json.loads((Path(__file__).resolve().parents[2] / "contracts" / "test-vectors" / "sealing" / "intake-test-key.jwks").read_text())
TOPIC = f"punte.ingress.{INSTITUTION}"
# What the receiver's authentication decides alone (runtime.ingress.authenticate); the
# other codes are the services' (sealing, the report's content, referrals), seen end to end.
AUTHENTICATION = {"MALFORMED_ENVELOPE", "MALFORMED_PAYLOAD", "SCHEMA_VIOLATION", "UNKNOWN_EVENT_TYPE",
                  "MISSING_SIGNATURE", "BAD_SIGNATURE", "UNKNOWN_KEY", "SOURCE_MISMATCH", "STALE_EVENT",
                  "FUTURE_EVENT", "SENDER_NOT_ALLOWED", "TOO_LARGE"}
PROBES = Probes(INSTITUTION, KEY, INTAKE_KEYS).all()


def code_of(headers, value: bytes) -> str:
    message = Message(TOPIC, 0, 7, None, value, tuple(headers), 0)
    try:
        authenticate(message, KEYRING)
    except Refused as exc:
        return exc.code
    return ACCEPTED


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_each_probe_breaks_the_rule_it_names_and_no_other(probe):
    code = code_of(probe.headers, probe.value)
    [expected] = sorted(probe.expect - {"CLEAR_REPORT_RETIRED"})
    if expected in AUTHENTICATION:
        assert code == expected
    else:
        assert code == ACCEPTED  # authentic: refused later, by the service, for what it says
    assert probe.section in SECTIONS.values()


def test_the_kit_sends_a_probe_for_every_refusal_the_doc_marks_kit():
    from tests.doc_examples import table_after
    marked = {row[0].strip("`") for row in table_after("## Refusals, and what causes each") if "*kit*" in row[2]}
    probed = {code for p in PROBES for code in p.expect} - {ACCEPTED, "CLEAR_REPORT_RETIRED"}
    assert probed == marked


def recorded(headers, value: bytes, offset: int = 0) -> Record:
    return Record(TOPIC, 0, offset, tuple(headers), value, int(datetime.now(timezone.utc).timestamp() * 1000))


def outcome(subject_id: str, code: str | None = None) -> Answer:
    data = {"subject_id": subject_id, "subject_type": "ro.punte.report.submitted.v3",
            "status": "rejected" if code else "accepted"}
    if code:
        data["reason"] = {"code": code, "message_ro": code, "message_en": code}
    return Answer(data, True)


def test_the_recorded_mode_passes_a_good_message_and_flags_a_padded_signature_where_the_doc_says():
    good = next(p for p in PROBES if p.name == "report v3, sealed")
    broken = next(p for p in PROBES if p.name == "BAD_SIGNATURE: padded with ==")
    records = [recorded(good.headers, good.value, 0), recorded(broken.headers, broken.value, 1)]
    answers = {records[0].subject_id: outcome(records[0].subject_id),
               records[1].subject_id: outcome(records[1].subject_id, "BAD_SIGNATURE")}
    checks = check_recorded(INSTITUTION, records, answers, KEYRING)
    assert all(c.passed for c in checks if c.subject.startswith(records[0].position))
    failed = {(c.rule, c.section) for c in checks if c.subject.startswith(records[1].position) and not c.passed}
    assert failed == {("signature verifies with the institution's key", "signing-and-the-headers"),
                      ("headers match cloudevents-binary-kafka.json", "signing-and-the-headers"),
                      ("outcome accepted", "refusals-and-what-causes-each")}
    assert all(c.where.startswith("docs/connecting.md#") for c in checks)


def test_the_recorded_mode_flags_what_the_contract_forbids_and_a_missing_outcome():
    good = next(p for p in PROBES if p.name == "report v3, sealed")
    plain = tuple((k, b"text/plain" if k == "content-type" else v) for k, v in good.headers)
    spaced = tuple((k, v.replace(b"T", b" ") if k == "ce_time" else v) for k, v in good.headers)
    cases = {
        "content-type application/json": plain,
        "each header once": good.headers + (("ce_id", dict(good.headers)["ce_id"]),),
        "ce_time is RFC 3339 with a time zone": spaced,
    }
    for rule, headers in cases.items():
        record = recorded(headers, good.value)
        checks = check_recorded(INSTITUTION, [record], {record.subject_id: outcome(record.subject_id)}, KEYRING)
        assert rule in {c.rule for c in checks if not c.passed}, rule
    record = recorded(good.headers, good.value)
    [missing] = [c for c in check_recorded(INSTITUTION, [record], {}, KEYRING) if not c.passed]
    assert (missing.rule, missing.section) == ("an outcome on the delivery topic", "the-outcome")


def test_an_outcome_is_trusted_only_with_the_networks_signature():
    answer = NETWORK_KEY.sign(CloudEvent.new("ro.punte.outcome.v1", "/punte/intake", outcome("x").data))
    good = Record(f"punte.delivery.{INSTITUTION}", 0, 0, tuple(answer.headers()), answer.body())
    forged = Record(good.topic, 0, 1, good.headers, answer.body().replace(b"accepted", b"rejected"))
    assert read_answer(good, NETWORK_KEYS).signed
    assert not read_answer(forged, NETWORK_KEYS).signed
    assert padded(good.headers) != good.headers


def test_the_command_says_what_it_lacks_and_exits_2(tmp_path):
    from typer.testing import CliRunner

    from punte.cli import app
    runner = CliRunner()
    unknown = runner.invoke(app, ["conformance", "--institution", "nu-exista", "--state-dir", str(tmp_path)])
    remote = runner.invoke(app, ["conformance", "--institution", INSTITUTION, "--url", "intake=http://127.0.0.1:9",
                                 "--bootstrap", "127.0.0.1:9"])
    local = runner.invoke(app, ["conformance", "--institution", INSTITUTION, "--state-dir", str(tmp_path)])
    assert unknown.exit_code == remote.exit_code == local.exit_code == 2
    assert "institutions.csv" in unknown.output
    assert "--key-file" in remote.output
    assert "punte up" in local.output  # no local network running, and none named


def test_the_kit_reads_the_network_keys_of_an_embedded_state_folder(tmp_path: Path):
    """Where no service answers (a local network that is down), the kit falls back to the
    state folder's keys/network.pub.json: a JWKS, as every service serves it."""
    from punte.conformance import network_keys_of_state
    from punte.state import State

    state = State(tmp_path / "state")
    state.prepare()
    found = network_keys_of_state(state.keys)
    assert found is not None
    network = SigningKey.load(state.network_key_file)
    outcome = network.sign(CloudEvent.new("ro.punte.outcome.v1", "/punte/intake", {"subject_id": "x"}))
    found[0].verify_event(NETWORK, outcome, outcome.body())
