"""The embedded issuer's accounts (accounts.json): who may sign in, with which roles, and
how a password is checked. Apart from the issuer's server (punte.identity), so that a state
folder is prepared, and the operator's commands start, without loading a web framework."""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Account:
    username: str
    password_hash: str
    salt: str
    institution: str | None
    roles: list[str]
    name: str


# Every password here is generated (96 random bits), never chosen by a person: a slow
# KDF guards guessable passwords and buys nothing against 2^96 guesses, while scrypt for
# each of the ~300 demo accounts made a fresh state folder take 15 s to prepare.
FAST_HASH = "sha256:"
# The role of an institution's own system (client credentials); every other account is a person.
SYSTEM_ROLE = "institution-system"


def hash_password(password: str, salt: str) -> str:
    return FAST_HASH + hashlib.sha256(bytes.fromhex(salt) + password.encode()).hexdigest()


def password_matches(account: Account, password: str) -> bool:
    if account.password_hash.startswith(FAST_HASH):
        expected = hash_password(password, account.salt)
    else:  # accounts.json written before: scrypt
        expected = hashlib.scrypt(password.encode(), salt=bytes.fromhex(account.salt),
                                  n=2**14, r=8, p=1).hex()
    return hmac.compare_digest(account.password_hash, expected)


def new_account(username: str, institution: str | None, roles: list[str], name: str) -> tuple[Account, str]:
    password = secrets.token_urlsafe(12)
    salt = secrets.token_hex(16)
    return Account(username, hash_password(password, salt), salt, institution, roles, name), password


def save_accounts(path: Path, accounts: list[Account]) -> None:
    path.write_text(json.dumps([a.__dict__ for a in accounts], ensure_ascii=False, indent=1))
    path.chmod(0o600)


def load_accounts(path: Path) -> dict[str, Account]:
    return {a["username"]: Account(**a) for a in json.loads(path.read_text())}


def grant_type_of(account: Account) -> str:
    """The one grant type an account may use: client credentials for an institution's
    system, the password grant for a person."""
    return "client_credentials" if SYSTEM_ROLE in account.roles else "password"
