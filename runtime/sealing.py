"""Envelope encryption of personal data at rest outside intake's identity vault.

Each scope (a case, a report not yet in a case) has its own data key (AES-256-GCM). The
data key is stored only wrapped by a key-encryption key (KEK) that a ``KeyProvider``
holds; the default provider reads its KEKs from configuration (``PUNTE_DATA_KEYS``, the
embedded default keeps them in the state folder's secrets file), and a KMS or HSM provider
implements the same two methods. Erasing a scope destroys its wrapped data key: every value
sealed under it becomes unreadable wherever its ciphertext rests (crypto-shredding), while
digests that commit to it (the audit's leaves) stay verifiable.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
FORMAT = b"\x01"  # the sealed value's layout: version byte, nonce, AES-GCM ciphertext


class SealingError(Exception):
    """A value cannot be opened: unknown key, wrong scope, altered bytes."""


def parse_keys(setting: str, name: str) -> dict[str, bytes]:
    """Keys written ``"kid:hex,kid:hex"`` (64 hex digits each), in order; the first is
    current. A ValueError naming keys by position, never quoting them, when there is none
    or one is malformed."""
    keys: dict[str, bytes] = {}
    for position, item in enumerate((i.strip() for i in setting.split(",") if i.strip()), start=1):
        kid, _, hexkey = (part.strip() for part in item.partition(":"))
        if not kid or not hexkey:
            raise ValueError(f"{name}: key {position} is not written kid:hex")
        try:
            key = bytes.fromhex(hexkey)
        except ValueError:
            raise ValueError(f"{name}: key {position} is not hexadecimal") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"{name}: key {position} is {len(key)} bytes, not {KEY_BYTES} (64 hex digits)")
        keys[kid] = key
    if not keys:
        raise ValueError(f"{name}: no key is set")
    return keys


def seal(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    """AES-256-GCM under ``key``; ``context`` (the scope, what the value is) is bound as
    associated data, so a sealed value moved to another scope does not open."""
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT + nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def open_sealed(key: bytes, sealed: bytes, context: bytes) -> bytes:
    if sealed[:1] != FORMAT or len(sealed) < 1 + NONCE_BYTES + 16:
        raise SealingError("not a sealed value of a known format")
    try:
        return AESGCM(key).decrypt(sealed[1:1 + NONCE_BYTES], sealed[1 + NONCE_BYTES:], context)
    except InvalidTag:
        raise SealingError("the sealed value does not open under its key and context") from None


class KeyProvider(Protocol):
    """Wraps and unwraps data keys with a key-encryption key it never hands out."""

    def wrap(self, data_key: bytes, scope: str) -> tuple[str, bytes]:
        """The current KEK's id and the data key wrapped under it, bound to ``scope``."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes, scope: str) -> bytes:
        ...


@dataclass(frozen=True)
class ConfiguredKeyProvider:
    """The default provider: KEKs from configuration (``PUNTE_DATA_KEYS``, ``kid:hex,…``).
    The first wraps new data keys; all unwrap, so a KEK is rotated by putting a new one
    first and retired once ``rewrap`` has moved every data key off it."""

    keys: dict[str, bytes]

    @staticmethod
    def from_setting(setting: str) -> "ConfiguredKeyProvider":
        return ConfiguredKeyProvider(parse_keys(setting, "PUNTE_DATA_KEYS"))

    @property
    def current(self) -> str:
        return next(iter(self.keys))

    def wrap(self, data_key: bytes, scope: str) -> tuple[str, bytes]:
        return self.current, seal(self.keys[self.current], data_key, b"data-key\x00" + scope.encode())

    def unwrap(self, kek_id: str, wrapped: bytes, scope: str) -> bytes:
        kek = self.keys.get(kek_id)
        if kek is None:
            raise SealingError(f"key-encryption key {kek_id!r} is not configured")
        return open_sealed(kek, wrapped, b"data-key\x00" + scope.encode())


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)
