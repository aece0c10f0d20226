"""Intake's encryption keys: what institutions seal the identifying parts of a report to
(report v3, JWE). Private EC P-256 keys in a JWKS file; the first is current (published
first, what senders use), the others still open what was sealed to them, so a key is
rotated by putting a new one first and removing the old one once no sender uses it.
Only intake holds the file; everyone may have the public half (GET /.well-known/jwks.json)."""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from contracts.refusals import Refused

ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
CURVE = "P-256"
# Only this pair opens: a JWE naming any other algorithm (dir, RSA1_5, none, ...) is refused
# before a key is touched.
REGISTRY = jwe.JWERegistry(algorithms=[ALG, ENC])


class SealedUnreadable(Refused):
    def __init__(self, detail: str) -> None:
        super().__init__("SEALED_UNREADABLE", detail)


def new_key(kid: str) -> dict[str, Any]:
    """A fresh private key as a JWK (for a key file)."""
    key = ECKey.generate_key(CURVE, parameters={"kid": kid, "use": "enc", "alg": ALG}, private=True)
    return key.as_dict(private=True)


def write_key_file(path: Path, keys: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"keys": keys}, indent=1))
    path.chmod(0o600)


@dataclass(frozen=True)
class ReportKeys:
    keys: tuple[ECKey, ...]  # the first is current

    @staticmethod
    def load(path: Path) -> "ReportKeys":
        """The keys of a JWKS file; a ValueError naming the problem (never a key) when the
        file is missing or holds no usable private P-256 key with a kid."""
        if not path.is_file():
            raise ValueError(f"{path} does not exist")
        try:
            data = json.loads(path.read_text())
            entries = data["keys"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path} is not a JWKS (a JSON object with keys)") from None
        keys: list[ECKey] = []
        for position, entry in enumerate(entries, start=1):
            try:
                key = ECKey.import_key(entry)
            except (JoseError, ValueError, TypeError):
                raise ValueError(f"{path}: key {position} is not an EC key") from None
            if key.curve_name != CURVE or not key.is_private or not key.kid:
                raise ValueError(f"{path}: key {position} must be a private {CURVE} key with a kid")
            keys.append(key)
        if not keys:
            raise ValueError(f"{path} holds no key")
        if len({k.kid for k in keys}) != len(keys):
            raise ValueError(f"{path}: two keys share a kid")
        return ReportKeys(tuple(keys))

    @property
    def current(self) -> str:
        return str(self.keys[0].kid)

    def public_jwks(self) -> dict[str, Any]:
        """The public keys, current first, as senders need them."""
        return {"keys": [{**k.as_dict(private=False), "use": "enc", "alg": ALG} for k in self.keys]}

    def open(self, compact: str) -> bytes:
        """The plaintext of a JWE sealed to one of the keys. SealedUnreadable otherwise,
        whose detail never repeats what was sent."""
        header = _protected_header(compact)
        if header.get("alg") != ALG or header.get("enc") != ENC:
            raise SealedUnreadable(f"only alg {ALG} with enc {ENC} is accepted")
        key = next((k for k in self.keys if k.kid == header.get("kid")), None)
        if key is None:
            raise SealedUnreadable("sealed to a key intake does not hold (kid); fetch "
                                   "/.well-known/jwks.json and seal to its first key")
        try:
            return jwe.decrypt_compact(compact, key, registry=REGISTRY).plaintext or b""
        except (JoseError, ValueError):
            raise SealedUnreadable("does not decrypt under intake's key") from None


def _protected_header(compact: str) -> dict[str, Any]:
    """The JWE's protected header, read before any key is chosen."""
    parts = compact.split(".")
    try:
        if len(parts) != 5:
            raise ValueError
        encoded = parts[0] + "=" * (-len(parts[0]) % 4)
        header = json.loads(base64.urlsafe_b64decode(encoded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise SealedUnreadable("not a JWE compact serialization") from None
    if not isinstance(header, dict):
        raise SealedUnreadable("not a JWE compact serialization")
    return header
