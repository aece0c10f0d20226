"""Ed25519 signatures of messages (docs/contracts.md, "Signing"): an institution signs
what it sends with its own key; the network signs what it delivers with its key, whose
public halves it publishes as a JWKS. The signature is detached, in ``ce_signature``
(base64url, no padding), over a signing input: v2 (``ce_sigversion: 2``) length-prefixes
every field; v1 (no ``ce_sigversion``) joins them with newlines."""
from __future__ import annotations

import base64
import json
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from punte_sdk.errors import SignatureRefused
from punte_sdk.events import Event, has_control_characters

PREFIXES = {1: b"punte-sig-v1\n", 2: b"punte-sig-v2\n"}
# What ce_sigversion names which input: absent (or empty) is v1.
VERSIONS = {None: 1, "": 1, "1": 1, "2": 2}
# A 64-byte Ed25519 signature in base64url without padding: exactly one spelling is accepted,
# as the network's header schema says (padding or standard base64's letters are refused).
SIGNATURE_SPELLING = re.compile(r"[A-Za-z0-9_-]{86}")
NETWORK_KEYS_PATH = "/.well-known/punte-network-keys.json"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signing_input(id: str, source: str, type: str, time: str, subject: str | None, body: bytes,
                  version: int = 2) -> bytes:
    """The bytes a signature covers. v2: ``punte-sig-v2\\n`` then the five attributes and
    the body, each as an SSH string (RFC 4251 section 5: a big-endian uint32 length, then
    the bytes). v1: ``punte-sig-v1\\n``, each attribute followed by a newline, the body."""
    attributes = [id, source, type, time, subject or ""]
    if version == 2:
        fields = [a.encode("utf-8") for a in attributes] + [body]
        return PREFIXES[2] + b"".join(struct.pack(">I", len(f)) + f for f in fields)
    if version == 1:
        return PREFIXES[1] + "".join(a + "\n" for a in attributes).encode("utf-8") + body
    raise ValueError(f"no signing input version {version}")


def event_signing_input(event: Event, version: int = 2) -> bytes:
    return signing_input(event.id, event.source, event.type, event.time, event.subject, event.body, version)


@dataclass(frozen=True)
class InstitutionKey:
    """An institution's Ed25519 signing key and its id (``ce_keyid``), as the operator
    gives it: the key file (JSON ``{"key_id", "pem"}``, PKCS#8 PEM) or an OKP JWK with ``d``."""

    key_id: str
    private: Ed25519PrivateKey

    @staticmethod
    def load(path: str | Path) -> "InstitutionKey":
        """The operator's key file: ``{"key_id": "...", "pem": "-----BEGIN PRIVATE KEY-----..."}``."""
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        private = serialization.load_pem_private_key(raw["pem"].encode("ascii"), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError("the key file does not hold an Ed25519 private key")
        return InstitutionKey(str(raw["key_id"]), private)

    @staticmethod
    def from_jwk(jwk: dict[str, Any] | str) -> "InstitutionKey":
        """An RFC 8037 OKP JWK (``kty: OKP``, ``crv: Ed25519``, ``x``, ``d``, ``kid``)."""
        key = json.loads(jwk) if isinstance(jwk, str) else jwk
        if key.get("kty") != "OKP" or key.get("crv") != "Ed25519" or not key.get("d") or not key.get("kid"):
            raise ValueError("not an Ed25519 private JWK with a kid")
        private = Ed25519PrivateKey.from_private_bytes(unb64url(key["d"]))
        if key.get("x") and b64url(_raw_public(private.public_key())) != key["x"]:
            raise ValueError("the JWK's x is not the public half of its d")
        return InstitutionKey(str(key["kid"]), private)

    def save(self, path: str | Path) -> None:
        """Write the key file format ``load`` reads, readable by its owner only."""
        pem = self.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        target = Path(path)
        target.write_text(json.dumps({"key_id": self.key_id, "pem": pem.decode("ascii")}), encoding="utf-8")
        target.chmod(0o600)

    def public_jwk(self) -> dict[str, str]:
        """The public half as an OKP JWK: what the operator registers for the institution."""
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(_raw_public(self.private.public_key())),
                "kid": self.key_id, "use": "sig", "alg": "EdDSA"}

    def sign(self, event: Event, version: int = 2) -> Event:
        """``event`` with ``keyid``, ``signature`` and (v2) ``sigversion: 2``. v1 stays for
        systems that signed before v2; send v2. Attributes with a control character are never
        signed (the network refuses them: MALFORMED_ENVELOPE)."""
        if version not in PREFIXES:
            raise ValueError(f"no signing input version {version}")
        if any(has_control_characters(a) for a in (event.id, event.source, event.type, event.time, event.subject)):
            raise ValueError("a signed attribute holds a control character")
        signature = self.private.sign(event_signing_input(event, version))
        return replace(event, keyid=self.key_id, signature=b64url(signature),
                       sigversion="2" if version == 2 else None)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class VerificationKeys:
    """Ed25519 public keys by key id, from a JWKS: the network's keys
    (``GET /.well-known/punte-network-keys.json`` on any service; the current key first,
    earlier ones still trusted during a rotation), or any signer's. Entries that are not
    Ed25519 signature keys are not trusted."""

    def __init__(self, keys: dict[str, Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    @staticmethod
    def from_jwks(jwks: dict[str, Any] | str) -> "VerificationKeys":
        document = json.loads(jwks) if isinstance(jwks, str) else jwks
        keys: dict[str, Ed25519PublicKey] = {}
        for jwk in document.get("keys", []):
            if (jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not jwk.get("kid") or not jwk.get("x")
                    or jwk.get("use", "sig") != "sig" or jwk.get("alg", "EdDSA") != "EdDSA"):
                continue
            keys.setdefault(str(jwk["kid"]), Ed25519PublicKey.from_public_bytes(unb64url(jwk["x"])))
        return VerificationKeys(keys)

    @staticmethod
    def fetch(service_url: str, *, client: httpx.Client | None = None, timeout: float = 10) -> "VerificationKeys":
        """The network's keys, from any of its services (public, no token). Fetch them again
        when a delivery names a key you do not have (``UNKNOWN_KEY``): the network rotated."""
        url = service_url.rstrip("/") + NETWORK_KEYS_PATH
        response = client.get(url, timeout=timeout) if client else httpx.get(url, timeout=timeout)
        response.raise_for_status()
        return VerificationKeys.from_jwks(response.json())

    def verify(self, *, id: str, source: str, type: str, time: str, subject: str | None, body: bytes,
               keyid: str | None, signature: str | None, sigversion: str | None) -> str:
        """The key id that signed the message, or SignatureRefused with the code the network
        gives for it, checked in the network's order: headers present (MISSING_SIGNATURE),
        key known (UNKNOWN_KEY), then the signature (BAD_SIGNATURE: an unknown
        ``ce_sigversion``, any other spelling than 86 base64url characters, a control
        character in a signed attribute, or an Ed25519 signature that does not verify)."""
        if not signature or not keyid:
            raise SignatureRefused("MISSING_SIGNATURE", "ce_signature and ce_keyid are required")
        key = self._keys.get(keyid)
        if key is None:
            raise SignatureRefused("UNKNOWN_KEY", f"key {keyid!r} is not a trusted key")
        version = VERSIONS.get(sigversion)
        if version is None:
            raise SignatureRefused("BAD_SIGNATURE", "unknown ce_sigversion")
        if not SIGNATURE_SPELLING.fullmatch(signature):
            raise SignatureRefused("BAD_SIGNATURE", "ce_signature is not 86 characters of base64url without padding")
        if any(has_control_characters(a) for a in (id, source, type, time, subject)):
            raise SignatureRefused("BAD_SIGNATURE", "a signed attribute holds a control character")
        try:
            key.verify(unb64url(signature), signing_input(id, source, type, time, subject, body, version))
        except (InvalidSignature, ValueError):
            raise SignatureRefused("BAD_SIGNATURE", "the signature does not verify") from None
        return keyid

    def verify_event(self, event: Event) -> str:
        return self.verify(id=event.id, source=event.source, type=event.type, time=event.time,
                           subject=event.subject, body=event.body, keyid=event.keyid,
                           signature=event.signature, sigversion=event.sigversion)
