"""The services agree with the shared test vectors (contracts/test-vectors/), which the SDKs
(sdk/python, sdk/java) check too: the network's code writes exactly the committed files,
and its receivers accept and refuse what they say, with the codes they say."""
from __future__ import annotations

import importlib.util
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from runtime.cloudevents import decode
from runtime.signing import NETWORK, Keyring, SignatureError
from services.intake.entrypoints.http import _structured

VECTORS = Path(__file__).resolve().parents[2] / "contracts" / "test-vectors"
SIGNING = json.loads((VECTORS / "signing.json").read_text())
DELIVERIES = json.loads((VECTORS / "deliveries.json").read_text())
GATEWAY = json.loads((VECTORS / "gateway.json").read_text())
SINCE = datetime(2020, 1, 1, tzinfo=timezone.utc)
# The vectors' ce_time is fixed; the keys' validity is checked at that time.
WHEN = datetime(2026, 3, 10, 7, 30, 2, tzinfo=timezone.utc)


def keyring(jwks: list[dict[str, str]], owner: str) -> Keyring:
    return Keyring.from_jwks({"keys": jwks}, owner)


def test_the_network_writes_exactly_the_committed_vectors(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("generate_vectors", VECTORS / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.write(tmp_path)
    for name in generate.FILES:
        assert (tmp_path / name).read_text() == (VECTORS / name).read_text(), f"{name} is stale: run generate.py"


def verify(ring: Keyring, owner: str, headers: list[tuple[str, str]] | dict[str, str], body: str) -> Any:
    pairs = headers.items() if isinstance(headers, dict) else headers
    encoded = [(k, v.encode()) for k, v in pairs]
    event = decode(encoded, body.encode())
    ring.verify_event(owner, event, body.encode(), now=WHEN)
    return event


@pytest.mark.parametrize("case", SIGNING["valid"], ids=lambda c: c["name"])
def test_the_receiver_accepts_each_valid_signature(case: dict[str, Any]):
    ring = keyring(SIGNING["keys"], SIGNING["owner"])
    event = verify(ring, SIGNING["owner"], case["headers"], case["body"])
    assert event.id == case["headers"]["ce_id"]


@pytest.mark.parametrize("case", SIGNING["refused"], ids=lambda c: c["name"])
def test_the_receiver_refuses_each_broken_signature_with_its_code(case: dict[str, Any]):
    ring = keyring(SIGNING["keys"], SIGNING["owner"])
    with pytest.raises(SignatureError) as refused:
        verify(ring, SIGNING["owner"], case["headers"], case["body"])
    assert refused.value.code == case["code"]


@pytest.mark.parametrize("record", DELIVERIES["records"], ids=lambda r: r["name"])
def test_the_network_signs_and_checks_deliveries_as_the_vectors_say(record: dict[str, Any]):
    ring = keyring(DELIVERIES["network_keys"]["keys"], NETWORK)
    expect = record["expect"]
    if not expect["verified"]:
        with pytest.raises(SignatureError) as refused:
            verify(ring, NETWORK, [tuple(h) for h in record["headers"]], record["value"])
        assert refused.value.code == expect["code"]
        return
    event = verify(ring, NETWORK, [tuple(h) for h in record["headers"]], record["value"])
    assert {"id": event.id, "source": event.source, "type": event.type, "time": event.time,
            "subject": event.subject, "data": event.data} == expect["event"]


@pytest.mark.parametrize("case", GATEWAY["structured"], ids=lambda c: c["name"])
def test_the_gateway_signs_structured_mode_over_the_documented_bytes(case: dict[str, Any]):
    attributes, body = _structured(case["request"].encode())
    assert body == case["signed_body"].encode()
    assert attributes["id"] == json.loads(case["request"])["id"]
