"""Ed25519 signatures of messages: each institution signs what it sends, the network signs
every message it writes. The signature is detached, in the ``ce_signature`` header, over
``signing_input`` (docs/contracts.md, Signing).

Two signing inputs exist. v1 joins the attributes with newlines, so an attribute holding a
newline could shift text between fields; v2 length-prefixes every field. ``ce_sigversion:
2`` selects v2 (no header: v1); each input starts with its own prefix, so a signature made
for one version never verifies as the other. The network signs with v2; institutions may
send either; control characters in a signed attribute are refused under both."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey as NaclSigningKey
from nacl.signing import VerifyKey

from contracts.refusals import Refused
from runtime.cloudevents import CloudEvent
from runtime.control_characters import has_control_characters

# The owner of the network's keys in a Keyring: what the services sign their own topics with.
NETWORK = "punte"
PREFIXES = {1: b"punte-sig-v1\n", 2: b"punte-sig-v2\n"}
# What SigningKey.sign writes; institutions that signed before v2 keep sending v1.
CURRENT_VERSION = 2
VERSION_EXTENSION = "sigversion"


def signing_input(id: str, source: str, type: str, time: str, subject: str | None, body: bytes,
                  version: int = CURRENT_VERSION) -> bytes:
    """The bytes a signature covers. v1: the attributes each followed by a newline, then the
    body. v2: every field (the five attributes, then the body) as an SSH string (RFC 4251
    section 5: its length as a big-endian uint32, then its bytes), so no field can run
    into the next whatever it holds."""
    attributes = [id, source, type, time, subject or ""]
    if version == 1:
        return PREFIXES[1] + "".join(a + "\n" for a in attributes).encode() + body
    if version == 2:
        fields = [a.encode() for a in attributes] + [body]
        return PREFIXES[2] + b"".join(struct.pack(">I", len(f)) + f for f in fields)
    raise ValueError(f"no signing input version {version}")


# An Ed25519 signature (64 bytes) in base64url without padding, as the header schema has it
# (contracts/schemas/cloudevents-binary-kafka.json, ce_signature).
SIGNATURE_SPELLING = re.compile(r"[A-Za-z0-9_-]{86}")


def version_of(header: str | None) -> int | None:
    """The signing input version a ``ce_sigversion`` value names (none: 1); None if unknown."""
    return {None: 1, "": 1, "1": 1, "2": 2}.get(header)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private: Ed25519PrivateKey

    @staticmethod
    def generate(key_id: str) -> "SigningKey":
        return SigningKey(key_id, Ed25519PrivateKey.generate())

    @cached_property
    def _signer(self) -> NaclSigningKey:
        """The same private key, for libsodium: an Ed25519 signature is deterministic, so the
        bytes are OpenSSL's, in 21 µs where OpenSSL takes 33 (every event the network
        writes is signed; decision 0043)."""
        return NaclSigningKey(self.private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()))

    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, event: CloudEvent, version: int = CURRENT_VERSION, body: bytes | None = None) -> CloudEvent:
        """The same event with ``keyid`` and ``signature`` extensions set (and
        ``sigversion`` from v2 on). Attributes with control characters are not signed.
        ``body``: ``event.body()`` when the caller has it already (encoded once)."""
        attributes = (event.id, event.source, event.type, event.time, event.subject or "")
        if any(has_control_characters(a) for a in attributes):
            raise ValueError("a signed attribute holds a control character")
        signature = self._signer.sign(signing_input(
            event.id, event.source, event.type, event.time, event.subject,
            event.body() if body is None else body, version)).signature
        extensions = {k: v for k, v in event.extensions.items() if k != VERSION_EXTENSION}
        extensions |= {"keyid": self.key_id, "signature": b64url(signature)}
        if version != 1:
            extensions[VERSION_EXTENSION] = str(version)
        return replace(event, extensions=extensions)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(json.dumps({"key_id": self.key_id, "pem": pem.decode()}).encode())
        path.chmod(0o600)

    @staticmethod
    def load(path: Path) -> "SigningKey":
        raw = json.loads(path.read_text())
        private = serialization.load_pem_private_key(raw["pem"].encode(), password=None)
        assert isinstance(private, Ed25519PrivateKey)
        return SigningKey(raw["key_id"], private)


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    owner: str
    public: bytes
    not_before: datetime
    not_after: datetime | None

    def valid_at(self, when: datetime) -> bool:
        return self.not_before <= when and (self.not_after is None or when < self.not_after)

    @cached_property
    def verifier(self) -> VerifyKey:
        """The key loaded once: every message of its owner is verified with it. libsodium
        verifies in half OpenSSL's time (54 against 117 µs here), and every consumer checks
        every message it reads (decision 0043)."""
        return VerifyKey(self.public)


class SignatureError(Refused):
    """The signature is missing, does not verify, or its key is not trusted."""


class Keyring:
    """Public keys by key id. Several keys per owner may be valid at once (rotation
    with overlap); a key is trusted only for its owner and inside its validity."""

    # Signatures found good, by a digest of the key, the signature and the signed bytes: the
    # audit trail reads the network's case events twice (the trail, and the cases' sides),
    # and a check costs 54 µs where its digest costs 2. Only the same three things again
    # find one; a key's owner and validity are checked first, every time.
    VERIFIED_KEPT = 4096

    def __init__(self, keys: list[PublicKey]) -> None:
        self._by_id = {k.key_id: k for k in keys}
        self._verified: dict[bytes, None] = {}

    @property
    def keys(self) -> list[PublicKey]:
        return list(self._by_id.values())

    def public_keys_of(self, owner: str, now: datetime | None = None) -> list[bytes]:
        """The raw public keys an owner may sign with now (several during a rotation)."""
        when = now or datetime.now(timezone.utc)
        return [k.public for k in self._by_id.values() if k.owner == owner and k.valid_at(when)]

    def verify(self, owner: str, body: bytes, event_id: str, source: str, type: str,
               time: str, subject: str | None, key_id: str | None, signature: str | None,
               now: datetime | None = None, version: str | None = None) -> None:
        """Raise SignatureError unless ``signature`` is ``owner``'s over the message;
        ``version`` is the ``ce_sigversion`` header as received (absent: v1)."""
        if not signature or not key_id:
            raise SignatureError("MISSING_SIGNATURE", "ce_signature and ce_keyid are required")
        key = self._by_id.get(key_id)
        if key is None or key.owner != owner:
            raise SignatureError("UNKNOWN_KEY", f"key {key_id!r} is not a key of {owner}")
        if not key.valid_at(now or datetime.now(timezone.utc)):
            raise SignatureError("UNKNOWN_KEY", f"key {key_id!r} is outside its validity")
        number = version_of(version)
        if number is None:
            raise SignatureError("BAD_SIGNATURE", "unknown ce_sigversion")
        if not SIGNATURE_SPELLING.fullmatch(signature):
            # One spelling, as the header schema says: base64 decoding would also take padding
            # and standard base64's letters, and a receiver must not accept more than it publishes.
            raise SignatureError("BAD_SIGNATURE", "ce_signature is not 86 characters of base64url without padding")
        # A control character could move text between v1's fields: never accepted, in
        # either version (decode refuses such envelopes too; this holds for any caller).
        if any(has_control_characters(a) for a in (event_id, source, type, time, subject or "")):
            raise SignatureError("BAD_SIGNATURE", "a signed attribute holds a control character")
        signed, raw = signing_input(event_id, source, type, time, subject, body, number), unb64url(signature)
        seen = hashlib.sha256(b"%b\x00%b\x00%b" % (key.public, raw, signed)).digest()
        if seen in self._verified:
            return
        try:
            key.verifier.verify(signed, raw)
        except (BadSignatureError, ValueError):
            raise SignatureError("BAD_SIGNATURE", "signature does not verify") from None
        if len(self._verified) >= self.VERIFIED_KEPT:
            del self._verified[next(iter(self._verified))]
        self._verified[seen] = None

    def verify_event(self, owner: str, event: CloudEvent, body: bytes, now: datetime | None = None) -> None:
        """``verify`` with the attributes and signature extensions of a decoded event."""
        self.verify(owner, body, event.id, event.source, event.type, event.time, event.subject,
                    event.extensions.get("keyid"), event.extensions.get("signature"), now=now,
                    version=event.extensions.get(VERSION_EXTENSION))

    def to_json(self) -> str:
        return json.dumps({"keys": [
            {"key_id": k.key_id, "owner": k.owner, "public": b64url(k.public),
             "not_before": k.not_before.isoformat(),
             "not_after": k.not_after.isoformat() if k.not_after else None}
            for k in self._by_id.values()
        ]}, indent=1)

    @staticmethod
    def from_json(text: str) -> "Keyring":
        keys = [
            PublicKey(
                key_id=k["key_id"], owner=k["owner"], public=unb64url(k["public"]),
                not_before=datetime.fromisoformat(k["not_before"]),
                not_after=datetime.fromisoformat(k["not_after"]) if k.get("not_after") else None,
            )
            for k in json.loads(text)["keys"]
        ]
        return Keyring(keys)

    @staticmethod
    def load(path: Path) -> "Keyring":
        return Keyring.from_json(path.read_text())

    @staticmethod
    def from_jwks(jwks: dict, owner: str = NETWORK) -> "Keyring":
        """The Ed25519 keys of a JWKS (RFC 8037 OKP keys, as ``network_jwks`` writes them)
        as keys of ``owner``, with no end to their validity; other keys are left out."""
        since = datetime.min.replace(tzinfo=timezone.utc)
        return Keyring([PublicKey(k["kid"], owner, unb64url(k["x"]), since, None) for k in jwks.get("keys", [])
                        if k.get("kty") == "OKP" and k.get("crv") == "Ed25519" and k.get("kid") and k.get("x")])


def network_keyring(key: SigningKey, earlier: Keyring | None = None) -> Keyring:
    """The public keys messages on the network's own topics may be signed with: the key this
    service signs with, and the network's keys in ``earlier`` (those still to be trusted
    during a rotation: PUNTE_NETWORK_KEYRING_FILE)."""
    kept = [k for k in (earlier.keys if earlier else []) if k.owner == NETWORK and k.key_id != key.key_id]
    since = datetime.min.replace(tzinfo=timezone.utc)
    return Keyring([*kept, PublicKey(key.key_id, NETWORK, key.public_raw(), since, None)])


def jwk(key: PublicKey) -> dict[str, str]:
    """An Ed25519 public key as a JWK (RFC 8037: kty OKP, crv Ed25519, x the raw key in
    base64url), named by its key id: the ``ce_keyid`` of what it signs."""
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(key.public), "kid": key.key_id,
            "use": "sig", "alg": "EdDSA"}


def network_jwks(current: SigningKey | None, keys: Keyring, now: datetime | None = None) -> dict[str, list]:
    """The network's public signing keys as a JWKS (docs/contracts.md, Signing): the key it
    signs with now first, then the earlier ones of ``keys`` still trusted (a rotation's,
    PUNTE_NETWORK_KEYRING_FILE). A receiver that meets an unknown ce_keyid fetches it again."""
    when = now or datetime.now(timezone.utc)
    since = datetime.min.replace(tzinfo=timezone.utc)
    first = [PublicKey(current.key_id, NETWORK, current.public_raw(), since, None)] if current else []
    earlier = [k for k in keys.keys if k.owner == NETWORK and k.valid_at(when)
               and (current is None or k.key_id != current.key_id)]
    return {"keys": [jwk(k) for k in [*first, *earlier]]}
