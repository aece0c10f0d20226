"""Signed checkpoints of the audit log, in the C2SP formats, so existing transparency-log
tooling (and witnesses) can read them.

- tlog-checkpoint: the body "<origin>\\n<size>\\n<base64 root>\\n".
- signed-note: body, blank line, then one "— <name> <base64(keyhash4 || signature)>\\n" line
  per signature (U+2014 EM DASH, space). Ed25519 keys: keyhash = SHA-256(name || "\\n" ||
  0x01 || pubkey)[:4], signature over the body bytes.
- tlog-cosignature/v1: a witness signs "cosignature/v1\\ntime <t>\\n" + body; its signature
  bytes are keyhash4 || t (8 bytes big-endian) || sig64, with algorithm byte 0x04 in the hash.

Pure: no I/O; keys come in as objects or raw bytes."""
from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# Signature algorithm identifiers from C2SP signed-note.
ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04

SIG_PREFIX = "\u2014 "  # EM DASH + space starts every signature line
COSIGNATURE_HEADER = "cosignature/v1\ntime {t}\n"
_ED25519_SIG = 64
_KEY_SIZE = 32
_MAX_SIGNATURES = 100  # same cap as the Go reference implementation: bounds work on hostile input


class CheckpointError(Exception):
    """A note or checkpoint that is malformed or whose signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode('ascii')}\n"


@dataclass(frozen=True)
class NoteSignature:
    name: str
    keyhash: bytes  # 4 bytes
    raw: bytes  # the signature bytes after the key hash (Ed25519: sig64; cosignature: t8 || sig64)


@dataclass(frozen=True)
class SignedNote:
    checkpoint: Checkpoint
    signatures: list[NoteSignature]
    body: str  # the exact signed text, kept as received so verification never re-serialises


def _check_name(name: str) -> None:
    # signed-note key names: non-empty, no Unicode whitespace, no '+' (the verifier-key separator).
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise CheckpointError(f"invalid key name {name!r}")


def key_hash(name: str, public_key: bytes, alg: int = ALG_ED25519) -> bytes:
    """SHA-256(name || "\\n" || alg || public key)[:4]; it picks out which key signed a line."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()[:4]


def _public_bytes(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes_raw()


def _load_public(public_key: bytes) -> Ed25519PublicKey:
    if not isinstance(public_key, (bytes, bytearray)) or len(public_key) != _KEY_SIZE:
        raise CheckpointError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(bytes(public_key))


def _signature_line(name: str, payload: bytes) -> str:
    return f"{SIG_PREFIX}{name} {base64.b64encode(payload).decode('ascii')}\n"


def sign(cp: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    """The full signed note: body, blank line, the log's signature line."""
    _check_name(name)
    body = cp.body()
    _parse_body(body)  # refuse to sign something our own parser would reject
    sig = private_key.sign(body.encode("utf-8"))
    return body + "\n" + _signature_line(name, key_hash(name, _public_bytes(private_key)) + sig)


def cosign(note_text: str, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> str:
    """A witness's cosignature line over the note's checkpoint, to be appended to the note.
    The witness is expected to have verified the log's signature and consistency first."""
    _check_name(name)
    if not 0 <= timestamp < 1 << 63:
        raise CheckpointError("timestamp out of range")
    body = parse(note_text).body
    message = COSIGNATURE_HEADER.format(t=timestamp) + body
    sig = private_key.sign(message.encode("utf-8"))
    keyhash = key_hash(name, _public_bytes(private_key), ALG_COSIGNATURE_V1)
    return _signature_line(name, keyhash + timestamp.to_bytes(8, "big") + sig)


def _parse_body(body: str) -> Checkpoint:
    lines = body.split("\n")
    # Exactly origin, size, root and the final newline. C2SP allows extension lines after the
    # root; this log never writes any, so one appearing is treated as malformed, not ignored.
    if len(lines) != 4 or lines[3] != "":
        raise CheckpointError("checkpoint body must be exactly three lines: origin, size, root")
    origin, size_text, root_text = lines[:3]
    if not origin:
        raise CheckpointError("checkpoint origin is empty")
    if not (size_text.isascii() and size_text.isdigit()) or (size_text != "0" and size_text[0] == "0"):
        raise CheckpointError(f"checkpoint size {size_text!r} is not a decimal number")
    try:
        root_hash = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError("checkpoint root is not base64") from None
    if len(root_hash) != 32 or base64.b64encode(root_hash).decode("ascii") != root_text:
        raise CheckpointError("checkpoint root is not a canonical base64 SHA-256 hash")
    return Checkpoint(origin=origin, size=int(size_text), root=root_hash)


def parse(note_text: str) -> SignedNote:
    """Split a signed note into checkpoint and signature lines. Checks form only, not keys."""
    if not isinstance(note_text, str):
        raise CheckpointError("note must be text")
    # The signature block starts after the last blank line (the body itself has none).
    cut = note_text.rfind("\n\n")
    if cut < 0 or not note_text.endswith("\n"):
        raise CheckpointError("note has no signature block")
    body, sig_block = note_text[: cut + 1], note_text[cut + 2:]
    if any(ch != "\n" and (ord(ch) < 0x20 or ord(ch) == 0x7F) for ch in body):
        raise CheckpointError("note text contains control characters")
    checkpoint = _parse_body(body)
    lines = sig_block[:-1].split("\n")  # drop the final newline, keep every line
    if len(lines) > _MAX_SIGNATURES:
        raise CheckpointError("too many signatures")
    signatures = []
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise CheckpointError(f"malformed signature line {line!r}")
        name, sep, b64 = line[len(SIG_PREFIX):].partition(" ")
        if not sep:
            raise CheckpointError(f"malformed signature line {line!r}")
        _check_name(name)
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise CheckpointError(f"signature by {name} is not base64") from None
        if len(raw) < 5:
            raise CheckpointError(f"signature by {name} is too short")
        signatures.append(NoteSignature(name=name, keyhash=raw[:4], raw=raw[4:]))
    return SignedNote(checkpoint=checkpoint, signatures=signatures, body=body)


def _candidates(note: SignedNote, name: str, keyhash: bytes) -> list[NoteSignature]:
    return [s for s in note.signatures if s.name == name and s.keyhash == keyhash]


def verify_note(note_text: str, name: str, public_key_bytes: bytes) -> Checkpoint:
    """The checkpoint, if the note carries a valid Ed25519 signature by (name, key)."""
    note = parse(note_text)
    key = _load_public(public_key_bytes)
    found = _candidates(note, name, key_hash(name, bytes(public_key_bytes)))
    if not found:
        raise CheckpointError(f"note has no signature by {name}")
    for s in found:
        if len(s.raw) != _ED25519_SIG:
            continue
        try:
            key.verify(s.raw, note.body.encode("utf-8"))
        except InvalidSignature:
            continue
        return note.checkpoint
    raise CheckpointError(f"signature by {name} does not verify")


def verify_cosignature(note_text: str, name: str, public_key_bytes: bytes) -> int:
    """The timestamp of a valid tlog-cosignature/v1 by (name, key) on the note."""
    note = parse(note_text)
    key = _load_public(public_key_bytes)
    found = _candidates(note, name, key_hash(name, bytes(public_key_bytes), ALG_COSIGNATURE_V1))
    if not found:
        raise CheckpointError(f"note has no cosignature by {name}")
    for s in found:
        if len(s.raw) != 8 + _ED25519_SIG:
            continue
        timestamp = int.from_bytes(s.raw[:8], "big")
        message = COSIGNATURE_HEADER.format(t=timestamp) + note.body
        try:
            key.verify(s.raw[8:], message.encode("utf-8"))
        except InvalidSignature:
            continue
        return timestamp
    raise CheckpointError(f"cosignature by {name} does not verify")


def verifier_key(name: str, public_key_bytes: bytes) -> str:
    """The signed-note verifier key string: name+hex(keyhash)+base64(0x01 || pubkey)."""
    _check_name(name)
    _load_public(public_key_bytes)
    pub = bytes(public_key_bytes)
    encoded = base64.b64encode(bytes([ALG_ED25519]) + pub).decode("ascii")
    return f"{name}+{key_hash(name, pub).hex()}+{encoded}"


def parse_verifier_key(text: str) -> tuple[str, bytes]:
    """(name, 32-byte Ed25519 public key) from a verifier key string, checking its key hash."""
    # Only two separators count: names have no '+' and the hash is hex, but base64 may hold '+'.
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("verifier key must be name+hash+key")
    name, hash_hex, key_b64 = parts
    _check_name(name)
    try:
        keyhash = bytes.fromhex(hash_hex)
        key = base64.b64decode(key_b64, validate=True)
    except (ValueError, binascii.Error):
        raise CheckpointError("verifier key hash or key is badly encoded") from None
    if len(hash_hex) != 8 or len(key) != 1 + _KEY_SIZE or key[0] != ALG_ED25519:
        raise CheckpointError("verifier key is not an Ed25519 key")
    pub = key[1:]
    if key_hash(name, pub) != keyhash:
        raise CheckpointError("verifier key hash does not match its name and key")
    return name, pub
