"""Signed checkpoints (C2SP tlog-checkpoint + signed-note + tlog-cosignature/v1): exact wire
format, round trips, and every kind of alteration is refused."""
from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.domain.checkpoint import (
    Checkpoint,
    CheckpointError,
    cosign,
    parse,
    parse_verifier_key,
    sign,
    verifier_key,
    verify_cosignature,
    verify_note,
)

LOG = "punte.ro/audit"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key().public_bytes_raw()
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
OTHER_PUB = OTHER.public_key().public_bytes_raw()
WITNESS = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
WITNESS_PUB = WITNESS.public_key().public_bytes_raw()
ROOT = hashlib.sha256(b"root").digest()
CP = Checkpoint(origin=LOG, size=42, root=ROOT)


def test_body_format():
    assert CP.body() == f"{LOG}\n42\n{base64.b64encode(ROOT).decode()}\n"
    assert Checkpoint(LOG, 0, hashlib.sha256(b"").digest()).body() == (
        f"{LOG}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")


def test_note_text_exactly_as_specified():
    note = sign(CP, LOG, KEY)
    body, sig_line = note.split("\n\n")
    assert body + "\n" == CP.body()
    assert sig_line.startswith("\u2014 " + LOG + " ") and sig_line.endswith("\n")
    assert sig_line.count("\n") == 1
    # Key hash by hand: SHA-256(name || 0x0A || 0x01 || pubkey)[:4], then the raw signature.
    raw = base64.b64decode(sig_line.split(" ")[2])
    hand = hashlib.sha256(LOG.encode() + b"\n" + b"\x01" + PUB).digest()[:4]
    assert raw[:4] == hand and len(raw) == 68
    KEY.public_key().verify(raw[4:], CP.body().encode())  # signature is over the body bytes


def test_go_sumdb_note_reference_vector():
    # golang.org/x/mod/sumdb/note's documented example: same key hash, key string and line.
    skey = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
    key = Ed25519PrivateKey.from_private_bytes(skey[1:])
    pub = key.public_key().public_bytes_raw()
    assert verifier_key("PeterNeumann", pub) == "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    text = b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    expected = ("x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6Ryy"
                "BwJnAM=")
    assert base64.b64encode(bytes.fromhex("c74f20a3") + key.sign(text)).decode() == expected


def test_round_trip():
    note = sign(CP, LOG, KEY)
    assert verify_note(note, LOG, PUB) == CP
    parsed = parse(note)
    assert parsed.checkpoint == CP and len(parsed.signatures) == 1
    assert parsed.signatures[0].name == LOG and len(parsed.signatures[0].raw) == 64


@pytest.mark.parametrize("altered", [
    Checkpoint(LOG, 43, ROOT),
    Checkpoint(LOG, 42, hashlib.sha256(b"other").digest()),
    Checkpoint("evil.example/log", 42, ROOT),
])
def test_changed_body_fails(altered):
    note = sign(CP, LOG, KEY)
    forged = altered.body() + note[len(CP.body()):]
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_note(forged, LOG, PUB)


def test_wrong_key_or_name_fails():
    note = sign(CP, LOG, KEY)
    with pytest.raises(CheckpointError, match="no signature"):
        verify_note(note, LOG, OTHER_PUB)
    with pytest.raises(CheckpointError, match="no signature"):
        verify_note(note, "someone.else", PUB)
    # A signature line that claims the log's name and key hash but was made by another key.
    impostor = sign(CP, LOG, OTHER).split("\n\n")[1]
    line = impostor.split(" ")
    raw = base64.b64decode(line[2])
    forged_raw = hashlib.sha256(LOG.encode() + b"\n\x01" + PUB).digest()[:4] + raw[4:]
    forged = CP.body() + "\n" + f"\u2014 {LOG} {base64.b64encode(forged_raw).decode()}\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_note(forged, LOG, PUB)


@pytest.mark.parametrize("text", [
    "", "no signatures\n", f"{LOG}\n42\n{base64.b64encode(ROOT).decode()}\n\n",
    f"{LOG}\n042\nAAAA\n\n\u2014 {LOG} AAAAAAAA\n",
    f"{LOG}\n42\nnot-base64\n\n\u2014 {LOG} AAAAAAAA\n",
    f"{LOG}\n42\n{base64.b64encode(ROOT).decode()}\n\n- {LOG} AAAAAAAA\n",  # hyphen, not em dash
    f"{LOG}\n42\n{base64.b64encode(ROOT).decode()}\n\n\u2014 {LOG} AAA\n",  # too short
    f"{LOG}\n42\n{base64.b64encode(ROOT).decode()}\next\n\n\u2014 {LOG} AAAAAAAA\n",
    f"{LOG}\n-1\n{base64.b64encode(ROOT).decode()}\n\n\u2014 {LOG} AAAAAAAA\n",
])
def test_malformed_notes_are_refused(text):
    with pytest.raises(CheckpointError):
        verify_note(text, LOG, PUB)


def test_cosignature_round_trip_and_several_lines():
    note = sign(CP, LOG, KEY)
    line = cosign(note, "witness.example/w1", WITNESS, 1_727_964_367)
    cosigned = note + line
    assert line.startswith("\u2014 witness.example/w1 ") and line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4] == hashlib.sha256(b"witness.example/w1\n\x04" + WITNESS_PUB).digest()[:4]
    assert raw[4:12] == (1_727_964_367).to_bytes(8, "big") and len(raw) == 76
    message = b"cosignature/v1\ntime 1727964367\n" + CP.body().encode()
    WITNESS.public_key().verify(raw[12:], message)

    cosigned += cosign(cosigned, "second.witness", OTHER, 5)
    parsed = parse(cosigned)
    assert [s.name for s in parsed.signatures] == [LOG, "witness.example/w1", "second.witness"]
    assert verify_note(cosigned, LOG, PUB) == CP
    assert verify_cosignature(cosigned, "witness.example/w1", WITNESS_PUB) == 1_727_964_367
    assert verify_cosignature(cosigned, "second.witness", OTHER_PUB) == 5


def test_cosignature_failures():
    note = sign(CP, LOG, KEY)
    cosigned = note + cosign(note, "w", WITNESS, 100)
    with pytest.raises(CheckpointError, match="no cosignature"):
        verify_cosignature(cosigned, "w", OTHER_PUB)
    with pytest.raises(CheckpointError, match="no cosignature"):
        verify_cosignature(note, "w", WITNESS_PUB)
    # The log's own (0x01) signature is not a cosignature, even under the log's own key.
    with pytest.raises(CheckpointError, match="no cosignature"):
        verify_cosignature(cosigned, LOG, PUB)
    # A cosignature over one checkpoint does not carry over to another.
    other = sign(Checkpoint(LOG, 43, ROOT), LOG, KEY)
    moved = other + cosigned.split("\n")[-2] + "\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_cosignature(moved, "w", WITNESS_PUB)
    # Changing the timestamp breaks it too: the time is inside the signed message.
    line = cosigned.split("\n")[-2]
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[11] ^= 1
    tampered = note + f"\u2014 w {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_cosignature(tampered, "w", WITNESS_PUB)


def test_verifier_key_round_trip():
    vkey = verifier_key(LOG, PUB)
    assert "+" in vkey.split("+", 2)[2]  # this key's base64 holds a '+': only two separators count
    name, hash_hex, key_b64 = vkey.split("+", 2)
    assert name == LOG
    assert hash_hex == hashlib.sha256(LOG.encode() + b"\n\x01" + PUB).digest()[:4].hex()
    assert base64.b64decode(key_b64) == b"\x01" + PUB
    assert parse_verifier_key(vkey) == (LOG, PUB)


@pytest.mark.parametrize("bad", [
    "nokey", "a+b", "a+00000000+" + base64.b64encode(b"\x01" + PUB).decode(),
    f"{LOG}+zzzz+AAAA", "a+b+c+d", verifier_key(LOG, PUB) + "+extra",
    "x+" + verifier_key(LOG, PUB).split("+", 1)[1],  # hash belongs to another name
])
def test_bad_verifier_keys(bad):
    with pytest.raises(CheckpointError):
        parse_verifier_key(bad)


@pytest.mark.parametrize("name", ["", "has space", "a+b"])
def test_bad_key_names(name):
    with pytest.raises(CheckpointError):
        sign(CP, name, KEY)
