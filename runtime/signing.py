"""Ed25519 signatures of messages: each institution signs what it sends, the network signs
its deliveries. The signature is detached, in the ``ce_signature`` header, over
``signing_input`` (docs/contracts.md)."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contracts.refusals import Refused
from runtime.cloudevents import CloudEvent

PREFIX = b"punte-sig-v1\n"


def signing_input(id: str, source: str, type: str, time: str, subject: str | None, body: bytes) -> bytes:
    head = "\n".join([id, source, type, time, subject or ""]) + "\n"
    return PREFIX + head.encode() + body


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

    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, event: CloudEvent) -> CloudEvent:
        """The same event with ``keyid`` and ``signature`` extensions set."""
        body = event.body()
        signature = self.private.sign(
            signing_input(event.id, event.source, event.type, event.time, event.subject, body)
        )
        return replace(event, extensions={**event.extensions, "keyid": self.key_id,
                                          "signature": b64url(signature)})

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


class SignatureError(Refused):
    """The signature is missing, does not verify, or its key is not trusted."""


class Keyring:
    """Public keys by key id. Several keys per owner may be valid at once (rotation
    with overlap); a key is trusted only for its owner and inside its validity."""

    def __init__(self, keys: list[PublicKey]) -> None:
        self._by_id = {k.key_id: k for k in keys}

    def public_keys_of(self, owner: str, now: datetime | None = None) -> list[bytes]:
        """The raw public keys an owner may sign with now (several during a rotation)."""
        when = now or datetime.now(timezone.utc)
        return [k.public for k in self._by_id.values() if k.owner == owner and k.valid_at(when)]

    def verify(self, owner: str, body: bytes, event_id: str, source: str, type: str,
               time: str, subject: str | None, key_id: str | None, signature: str | None,
               now: datetime | None = None) -> None:
        if not signature or not key_id:
            raise SignatureError("MISSING_SIGNATURE", "ce_signature and ce_keyid are required")
        key = self._by_id.get(key_id)
        if key is None or key.owner != owner:
            raise SignatureError("UNKNOWN_KEY", f"key {key_id!r} is not a key of {owner}")
        if not key.valid_at(now or datetime.now(timezone.utc)):
            raise SignatureError("UNKNOWN_KEY", f"key {key_id!r} is outside its validity")
        try:
            Ed25519PublicKey.from_public_bytes(key.public).verify(
                unb64url(signature), signing_input(event_id, source, type, time, subject, body)
            )
        except (InvalidSignature, ValueError):
            raise SignatureError("BAD_SIGNATURE", "signature does not verify") from None

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
