"""Events as the SDK builds them (docs/contracts.md, "Envelope"): what a receiver checks
before any signature."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from punte_sdk import Event, InstitutionKey, ingress_topic
from punte_sdk.deliveries import RFC_3339

KEY = InstitutionKey.from_jwk({"kty": "OKP", "crv": "Ed25519", "kid": "spas-colonesti-test-1",
                               "d": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"})


def test_a_new_event_has_a_fresh_uuid_an_rfc_3339_time_and_compact_utf8_json():
    first = Event.new("spas-colonesti", "ro.punte.report.submitted.v3", {"b": "Bacău", "a": [1, 2]})
    second = Event.new("spas-colonesti", "ro.punte.report.submitted.v3", {})
    assert uuid.UUID(first.id).version == 4 and first.id != second.id
    assert RFC_3339.fullmatch(first.time) and first.time.endswith("Z")
    assert abs(datetime.fromisoformat(first.time.replace("Z", "+00:00")) - datetime.now(timezone.utc)) \
        < timedelta(minutes=1)
    assert first.source == "/institutions/spas-colonesti" and ingress_topic("spas-colonesti") == \
        "punte.ingress.spas-colonesti"
    assert first.body == '{"b":"Bacău","a":[1,2]}'.encode()


def test_the_kafka_headers_are_binary_mode_with_json_content_and_the_signature():
    event = KEY.sign(Event.new("spas-colonesti", "ro.punte.referral.command.v1", {}, subject="ref-1"))
    headers = event.kafka_headers()
    assert [name for name, _ in headers] == ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time",
                                             "content-type", "ce_subject", "ce_keyid", "ce_signature",
                                             "ce_sigversion"]
    assert dict(headers)["content-type"] == b"application/json" and dict(headers)["ce_sigversion"] == b"2"
    assert re.fullmatch(r"[A-Za-z0-9_-]{86}", event.signature or "")


def test_a_time_without_a_zone_is_refused():
    with pytest.raises(ValueError):
        Event.new("spas-colonesti", "ro.punte.report.submitted.v3", {}, time=datetime(2026, 3, 10, 9, 30))


def test_an_attribute_with_a_control_character_is_never_signed():
    """The network refuses such an envelope (MALFORMED_ENVELOPE) and never signs one."""
    with pytest.raises(ValueError):
        KEY.sign(Event.new("spas-colonesti", "ro.punte.referral.command.v1", {}, subject="ref-1\n{"))


def test_a_jwk_whose_public_half_is_not_its_private_one_is_refused():
    other = InstitutionKey.from_jwk({"kty": "OKP", "crv": "Ed25519", "kid": "k", "d": "A" * 43}).public_jwk()["x"]
    with pytest.raises(ValueError):
        InstitutionKey.from_jwk({"kty": "OKP", "crv": "Ed25519", "kid": "spas-colonesti-test-1", "x": other,
                                 "d": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"})
