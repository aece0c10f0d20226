"""The identity vault: who a child is (CNP, names, address), encrypted with AES-256-GCM
under a key from configuration. Several keys may be configured; the first encrypts, any
decrypts, and ``rotate`` re-encrypts under the first, so a key can be retired."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from runtime import json_bytes
from runtime.sealing import KEY_BYTES, parse_keys

__all__ = ["KEY_BYTES", "IdentityVault", "Sealed"]


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class IdentityVault:
    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError("the current identity key is not configured")
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self.current = current

    @staticmethod
    def from_setting(setting: str) -> "IdentityVault":
        """From ``"kid:hex,kid:hex"`` (PUNTE_IDENTITY_KEYS); the first key encrypts. A
        ValueError, naming keys by position and never quoting them, when there is no key
        or one is not 32 bytes of hex."""
        keys = parse_keys(setting, "PUNTE_IDENTITY_KEYS")
        return IdentityVault(keys, next(iter(keys)))

    def seal(self, identity: dict[str, Any], child_ref: str) -> Sealed:
        nonce = os.urandom(12)
        # The pseudonym is bound as associated data: a row moved to another child fails.
        ciphertext = self._keys[self.current].encrypt(
            nonce, json_bytes.compact(identity), child_ref.encode())
        return Sealed(self.current, nonce, ciphertext)

    def open(self, sealed: Sealed, child_ref: str) -> dict[str, Any]:
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise KeyError(f"identity key {sealed.key_id!r} is not configured")
        return json.loads(key.decrypt(sealed.nonce, sealed.ciphertext, child_ref.encode()))

    def rotate(self, sealed: Sealed, child_ref: str) -> Sealed:
        if sealed.key_id == self.current:
            return sealed
        return self.seal(self.open(sealed, child_ref), child_ref)
