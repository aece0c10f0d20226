"""Message signatures: the v2 signing input (length-prefixed fields) the network signs with,
v1 signatures institutions may still send, and the newline attack v1 was open to."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from runtime.cloudevents import CloudEvent, EnvelopeError, decode
from runtime.signing import Keyring, PublicKey, SignatureError, SigningKey, b64url, signing_input

NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
KEY = SigningKey.generate("isj-bc-1")
KEYRING = Keyring([PublicKey(KEY.key_id, "isj-bc", KEY.public_raw(), NOW - timedelta(days=30), None)])


def verify(event: CloudEvent, body: bytes | None = None) -> None:
    KEYRING.verify("isj-bc", body if body is not None else event.body(), event.id, event.source,
                   event.type, event.time, event.subject, event.extensions.get("keyid"),
                   event.extensions.get("signature"), now=NOW,
                   version=event.extensions.get("sigversion"))


def report(subject: str | None = "case-1") -> CloudEvent:
    return CloudEvent.new("ro.punte.x.v1", "/institutions/isj-bc", {"n": 1}, subject=subject)


def test_events_are_signed_with_v2_by_default_and_say_so():
    signed = KEY.sign(report())
    assert signed.extensions["sigversion"] == "2"
    verify(signed)
    back = decode(signed.headers(), signed.body())
    assert back.extensions["sigversion"] == "2", "the marker travels as the ce_sigversion header"


def test_v1_signatures_without_a_version_header_still_verify():
    signed = KEY.sign(report(), version=1)
    assert "sigversion" not in signed.extensions
    verify(signed)
    with pytest.raises(SignatureError) as bad:
        verify(signed, body=b'{"n":2}')
    assert bad.value.code == "BAD_SIGNATURE"


@pytest.mark.parametrize("version", [1, 2])
def test_a_signature_does_not_verify_under_the_other_version(version: int):
    signed = KEY.sign(report(), version=version)
    other = {**signed.extensions, "sigversion": "1" if version == 2 else "2"}
    with pytest.raises(SignatureError) as bad:
        verify(replace(signed, extensions=other))
    assert bad.value.code == "BAD_SIGNATURE"
    stripped = {k: v for k, v in signed.extensions.items() if k != "sigversion"}
    if version == 2:  # dropping the header does not downgrade a v2 signature into a valid v1
        with pytest.raises(SignatureError):
            verify(replace(signed, extensions=stripped))


def test_an_unknown_signature_version_is_refused():
    signed = KEY.sign(report())
    with pytest.raises(SignatureError) as bad:
        verify(replace(signed, extensions={**signed.extensions, "sigversion": "9"}))
    assert bad.value.code == "BAD_SIGNATURE"


# The newline attack on v1: the fields are joined with "\n", so a signature over
# (subject="case-1", body='{"n":1,\n"p":"P3"}') is also one over
# (subject='case-1\n{"n":1,', body='"p":"P3"}'): part of the body moves into the subject.
LEGIT_BODY = b'{"n":1,\n"p":"P3"}'
FORGED_SUBJECT, FORGED_BODY = 'case-1\n{"n":1,', b'"p":"P3"}'


def test_v1_signing_inputs_of_a_moved_newline_collide_and_v2_ones_do_not():
    legit = ("e-1", "/institutions/isj-bc", "t.v1", "2026-11-22T12:00:00Z", "case-1", LEGIT_BODY)
    forged = ("e-1", "/institutions/isj-bc", "t.v1", "2026-11-22T12:00:00Z", FORGED_SUBJECT, FORGED_BODY)
    assert signing_input(*legit, version=1) == signing_input(*forged, version=1), "why v2 exists"
    assert signing_input(*legit, version=2) != signing_input(*forged, version=2)


def test_a_v1_signature_with_a_newline_moved_into_the_subject_is_refused():
    legit = report()
    signature = KEY.private.sign(signing_input(legit.id, legit.source, legit.type, legit.time,
                                               "case-1", LEGIT_BODY, version=1))
    forged = replace(legit, subject=FORGED_SUBJECT,
                     extensions={"keyid": KEY.key_id, "signature": b64url(signature)})
    with pytest.raises(SignatureError) as refused:
        verify(forged, body=FORGED_BODY)
    assert refused.value.code == "BAD_SIGNATURE"
    with pytest.raises(EnvelopeError) as unreadable:  # and the envelope is refused before that
        decode(forged.headers(), b"{}")
    assert unreadable.value.code == "MALFORMED_ENVELOPE"


@pytest.mark.parametrize("subject", ["case\n1", "case\r1", "case\x001", "case\x1b1", "case\x851"])
def test_control_characters_in_a_signed_attribute_are_refused(subject: str):
    with pytest.raises(EnvelopeError) as unreadable:
        decode(report(subject).headers(), b"{}")
    assert unreadable.value.code == "MALFORMED_ENVELOPE"
    with pytest.raises(ValueError):
        KEY.sign(report(subject))


def test_a_subject_in_romanian_is_not_a_control_character():
    signed = KEY.sign(report("caz-ăîșț"))
    verify(decode(signed.headers(), signed.body()))


def _signed_with(plus_or_slash: str) -> CloudEvent:
    """A signed report whose signature holds ``-`` or ``_`` (base64url's own letters), so
    its standard-base64 spelling differs."""
    for n in range(500):
        signed = KEY.sign(CloudEvent.new("ro.punte.x.v1", "/institutions/isj-bc", {"n": n}))
        if plus_or_slash in signed.extensions["signature"]:
            return signed
    raise AssertionError("no signature with that letter in 500 tries")


@pytest.mark.parametrize("spelling", ["padded", "standard", "standard padded"])
def test_a_signature_spelt_other_than_base64url_without_padding_is_refused(spelling: str):
    """The header schema and docs/contracts.md say 86 characters of base64url without
    padding; the same bytes spelt otherwise used to verify (issue #16)."""
    signed = _signed_with("-")
    canonical = signed.extensions["signature"]
    verify(signed)
    respelt = {"padded": canonical + "==",
               "standard": canonical.replace("-", "+").replace("_", "/"),
               "standard padded": canonical.replace("-", "+").replace("_", "/") + "=="}[spelling]
    with pytest.raises(SignatureError) as refused:
        verify(replace(signed, extensions={**signed.extensions, "signature": respelt}))
    assert refused.value.code == "BAD_SIGNATURE"


def test_a_signature_found_good_once_lets_nothing_else_through():
    """Keyring keeps the signatures it found good (the audit reads each case event twice);
    only the same key, signature and signed bytes find one, after the owner and validity
    checks, which run every time."""
    keyring = Keyring([PublicKey(KEY.key_id, "isj-bc", KEY.public_raw(), NOW - timedelta(days=30), NOW)])
    signed = KEY.sign(report())

    def check(event: CloudEvent, body: bytes, owner: str = "isj-bc", now: datetime = NOW - timedelta(days=1)) -> None:
        keyring.verify(owner, body, event.id, event.source, event.type, event.time, event.subject,
                       event.extensions.get("keyid"), event.extensions.get("signature"), now=now,
                       version=event.extensions.get("sigversion"))

    check(signed, signed.body())
    check(signed, signed.body())  # the same again: found good before
    refusals = []
    for event, body, owner, now in (
            (signed, b'{"n":2}', "isj-bc", NOW - timedelta(days=1)),  # another body
            (replace(signed, subject="case-2"), signed.body(), "isj-bc", NOW - timedelta(days=1)),
            (signed, signed.body(), "das-bc", NOW - timedelta(days=1)),  # not this owner's key
            (signed, signed.body(), "isj-bc", NOW + timedelta(days=1))):  # the key has expired
        with pytest.raises(SignatureError) as refused:
            check(event, body, owner, now)
        refusals.append(refused.value.code)
    assert refusals == ["BAD_SIGNATURE", "BAD_SIGNATURE", "UNKNOWN_KEY", "UNKNOWN_KEY"]


def test_the_signatures_kept_are_bounded():
    keyring = Keyring([PublicKey(KEY.key_id, "isj-bc", KEY.public_raw(), NOW - timedelta(days=30), None)])
    keyring.VERIFIED_KEPT = 3
    for n in range(5):
        keyring.verify_event("isj-bc", signed := KEY.sign(replace(report(), id=f"ev-{n}")), signed.body(), now=NOW)
    assert len(keyring._verified) == 3


def test_libsodium_signs_the_bytes_openssl_would_for_the_key_on_file(tmp_path):
    """The network's key is kept as PKCS#8 PEM (cryptography) and signs through libsodium:
    the same key loaded back signs the same event with the same signature as OpenSSL."""
    KEY.save(tmp_path / "key.json")
    loaded = SigningKey.load(tmp_path / "key.json")
    event = report()
    signed = loaded.sign(event)
    expected = KEY.private.sign(signing_input(event.id, event.source, event.type, event.time,
                                              event.subject, event.body(), 2))
    assert signed.extensions["signature"] == b64url(expected)
    verify(signed)
