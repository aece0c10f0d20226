"""Write the shared test vectors (contracts/test-vectors/*.json) from the network's own code.

Run `python contracts/test-vectors/generate.py` after a change to signing or the envelope,
review the diff, commit. The keys are derived from fixed seeds and Ed25519 signatures are
deterministic, so a run on unchanged code writes the same bytes: tests/unit/test_test_vectors.py
checks that the services agree with the files, and the SDKs (sdk/python, sdk/java) check
that they do too, so the three cannot drift. Every key here is for tests only."""
from __future__ import annotations

import base64
import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from runtime.cloudevents import CloudEvent  # noqa: E402
from runtime.signing import NETWORK, PublicKey, SigningKey, b64url, signing_input  # noqa: E402
from runtime.signing import jwk as public_jwk

INSTITUTION = "spas-colonesti"
INSTITUTION_KEY_ID = "spas-colonesti-test-1"
NETWORK_KEY_ID = "punte-test-1"
NETWORK_EARLIER_KEY_ID = "punte-test-0"
TIME = "2026-03-10T09:30:00+02:00"


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"punte test vector key: {name}".encode()).digest())


def jwk(key_id: str, private: Ed25519PrivateKey, *, secret: bool) -> dict[str, str]:
    """An Ed25519 key as an RFC 8037 OKP JWK; ``secret`` adds the private ``d``."""
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    # As the network serves its keys (GET /.well-known/punte-network-keys.json).
    out = public_jwk(PublicKey(key_id, NETWORK, public, datetime.min.replace(tzinfo=timezone.utc), None))
    if secret:
        out["d"] = b64url(private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()))
    return out


def body_of(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


REPORT_V2 = json.loads(sorted((HERE.parents[0] / "examples" / "ro.punte.report.submitted.v2").glob("*.json"))[0].read_text())


def signing_cases() -> dict[str, Any]:
    institution = SigningKey(INSTITUTION_KEY_ID, key(INSTITUTION_KEY_ID))
    source = f"/institutions/{INSTITUTION}"
    report_body = body_of(REPORT_V2)
    cases = [
        ("a v2 report, v2 signing input", "7c1d0a4e-5b1f-4e7a-9a55-1b2c3d4e5f60", "ro.punte.report.submitted.v2",
         None, report_body, 2),
        ("a v1 signing input, with a subject", "0b8f6a52-8a43-4a0f-b7a6-2f3e4d5c6b7a", "ro.punte.referral.command.v1",
         "ref-01JQ8Z3K5X2M4N6P8R0T2V4W6Y",
         body_of({"referral_id": "ref-01JQ8Z3K5X2M4N6P8R0T2V4W6Y", "command": "start"}), 1),
        ("v2, non-ASCII in the body and the subject", "d2f0e1c4-3a9b-4c8d-8e7f-6a5b4c3d2e1f",
         "ro.punte.referral.command.v1", "ref-Ștefănești",
         body_of({"referral_id": "ref-01JQ8Z3K5X2M4N6P8R0T2V4W6Y", "command": "hold",
                  "reason": "other", "note": "Familia s-a mutat în Bacău (exemplu sintetic)."}), 2),
        ("v2, an empty JSON object as the body", "f3e2d1c0-b9a8-4765-8432-10fedcba9876",
         "ro.punte.service.updated.v1", None, b"{}", 2),
    ]
    valid = []
    for name, event_id, type_, subject, body, version in cases:
        text = signing_input(event_id, source, type_, TIME, subject, body, version)
        signature = b64url(institution.private.sign(text))
        headers = {"ce_specversion": "1.0", "ce_id": event_id, "ce_source": source, "ce_type": type_,
                   "ce_time": TIME, "content-type": "application/json"}
        if subject is not None:
            headers["ce_subject"] = subject
        headers |= {"ce_keyid": INSTITUTION_KEY_ID, "ce_signature": signature}
        if version == 2:
            headers["ce_sigversion"] = "2"
        valid.append({"name": name, "sigversion": version, "headers": headers, "body": body.decode(),
                      "signing_input": b64url(text), "signature": signature})

    good = valid[0]
    raw = base64.urlsafe_b64decode(good["signature"] + "==")

    def variant(name: str, code: str, body: str | None = None, **headers: str | None) -> dict[str, Any]:
        changed = {k: v for k, v in (good["headers"] | headers).items() if v is not None}
        return {"name": name, "headers": changed, "body": good["body"] if body is None else body, "code": code}

    refused = [
        variant("the signature with base64 padding", "BAD_SIGNATURE", ce_signature=good["signature"] + "=="),
        variant("the signature in standard base64", "BAD_SIGNATURE",
                ce_signature=base64.b64encode(raw).decode().rstrip("=")),
        variant("the body with a space added (same JSON, other bytes)", "BAD_SIGNATURE", body=good["body"] + " "),
        variant("ce_time written otherwise (the header is signed as sent)", "BAD_SIGNATURE",
                ce_time="2026-03-10T07:30:00Z"),
        variant("a v2 signature sent as v1 (ce_sigversion removed)", "BAD_SIGNATURE", ce_sigversion=None),
        variant("an unknown ce_sigversion", "BAD_SIGNATURE", ce_sigversion="3"),
        variant("a key id the institution does not have", "UNKNOWN_KEY", ce_keyid="spas-colonesti-test-9"),
        variant("no ce_signature", "MISSING_SIGNATURE", ce_signature=None),
    ]
    return {
        "description": "Ed25519 signatures of institution messages (docs/contracts.md, Signing). "
                       "Each valid case: the signing input (base64url, no padding) built from the "
                       "headers and the body (UTF-8), and its signature by keys[headers.ce_keyid]. "
                       "Each refused case: what a receiver must answer, with the same key.",
        "owner": INSTITUTION,
        "keys": [jwk(INSTITUTION_KEY_ID, institution.private, secret=True)],
        "valid": valid,
        "refused": refused,
    }


def delivery(network: SigningKey, name: str, type_: str, data: dict[str, Any], event_id: str,
             subject: str | None, key_: str) -> dict[str, Any]:
    event = network.sign(CloudEvent(id=event_id, source="/punte/intake", type=type_, time="2026-03-10T07:30:01.250000Z",
                                    data=data, subject=subject))
    return {"name": name, "topic": f"punte.delivery.{INSTITUTION}", "key": key_,
            "headers": [[k, v.decode()] for k, v in event.headers()], "value": event.body().decode(),
            "expect": {"verified": True, "event": {
                "id": event.id, "source": event.source, "type": event.type, "time": event.time,
                "subject": event.subject, "data": data}}}


def deliveries() -> dict[str, Any]:
    network = SigningKey(NETWORK_KEY_ID, key(NETWORK_KEY_ID))
    earlier = SigningKey(NETWORK_EARLIER_KEY_ID, key(NETWORK_EARLIER_KEY_ID))
    examples = HERE.parents[0] / "examples"
    outcome = json.loads((examples / "ro.punte.outcome.v1" / "01-report-accepted.json").read_text())
    rejected = json.loads((examples / "ro.punte.outcome.v1" / "02-report-rejected-invalid-cnp.json").read_text())
    notification = json.loads((examples / "ro.punte.case.notification.v1" / "04-report-added-spas.json").read_text())
    records = [
        delivery(network, "an accepted outcome", "ro.punte.outcome.v1", outcome,
                 "5e0c7d1a-6b2f-5c3d-8e4f-9a0b1c2d3e4f", None, outcome["subject_id"]),
        delivery(network, "a rejected outcome (Romanian and English messages)", "ro.punte.outcome.v1", rejected,
                 "6f1d8e2b-7c3a-5d4e-9f5a-0b1c2d3e4f5a", None, rejected["subject_id"]),
        delivery(network, "a case notification", "ro.punte.case.notification.v1", notification,
                 "7a2e9f3c-8d4b-5e5f-8a6b-1c2d3e4f5a6b", notification.get("case_id"),
                 notification.get("case_id") or "7a2e9f3c-8d4b-5e5f-8a6b-1c2d3e4f5a6b"),
        delivery(earlier, "an outcome signed with the earlier network key (rotation)", "ro.punte.outcome.v1",
                 outcome, "8b3f0a4d-9e5c-5f6a-9b7c-2d3e4f5a6b7c", None, outcome["subject_id"]),
    ]

    def broken(name: str, code: str, value: str | None = None, **headers: str | None) -> dict[str, Any]:
        record = json.loads(json.dumps(records[0]))
        current = dict(record["headers"]) | headers
        record |= {"name": name, "headers": [[k, v] for k, v in current.items() if v is not None],
                   "expect": {"verified": False, "code": code}}
        if value is not None:
            record["value"] = value
        return record

    records += [
        broken("the value changed after signing", "BAD_SIGNATURE",
               value=records[0]["value"].replace('"P1"', '"P3"')),
        broken("signed by a key the network does not list", "UNKNOWN_KEY", ce_keyid="punte-test-9"),
        broken("no signature", "MISSING_SIGNATURE", ce_signature=None, ce_keyid=None),
    ]
    return {
        "description": "Messages the network writes to an institution's delivery topic, as Kafka "
                       "records (headers in order, the value as UTF-8). A receiver verifies each "
                       "with network_keys (a JWKS, as GET /.well-known/punte-network-keys.json "
                       "serves it: the current key first) and decodes it, or refuses it with code.",
        "network_keys": {"keys": [jwk(NETWORK_KEY_ID, network.private, secret=False),
                                  jwk(NETWORK_EARLIER_KEY_ID, earlier.private, secret=False)]},
        "records": records,
    }


def gateway() -> dict[str, Any]:
    """Structured mode over HTTP: the bytes a signature covers are `data` re-serialised."""
    data = {"referral_id": "ref-01JQ8Z3K5X2M4N6P8R0T2V4W6Y", "command": "hold", "reason": "other",
            "note": "Familia s-a mutat în Bacău (exemplu sintetic)."}
    request = {"specversion": "1.0", "id": "c4b3a291-8f7e-4d6c-9b5a-4f3e2d1c0b9a",
               "source": f"/institutions/{INSTITUTION}", "type": "ro.punte.referral.command.v1",
               "time": TIME, "subject": "ref-01JQ8Z3K5X2M4N6P8R0T2V4W6Y",
               "datacontenttype": "application/json", "data": data}
    return {
        "description": "HTTP gateway, structured mode (application/cloudevents+json): the "
                       "signature covers `signed_body`, the UTF-8 of `data` as compact JSON "
                       "(no spaces, non-ASCII as is, keys in the order sent), or the bytes of "
                       "data_base64 when that is sent instead.",
        "structured": [{"name": "data as a JSON object", "request": json.dumps(request, ensure_ascii=False, indent=2),
                        "signed_body": body_of(data).decode()},
                       {"name": "data_base64", "request": json.dumps(
                           {k: v for k, v in request.items() if k != "data"}
                           | {"data_base64": base64.b64encode(b'{"note": "spaced, as signed"}').decode()}, indent=2),
                        "signed_body": '{"note": "spaced, as signed"}'}],
    }


FILES = {"signing.json": signing_cases, "deliveries.json": deliveries, "gateway.json": gateway}


def write(folder: Path = HERE) -> None:
    for name, build in FILES.items():
        (folder / name).write_text(json.dumps(build(), ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    write()
