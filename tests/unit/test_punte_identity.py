"""The embedded default's token issuer: accounts, the password grant and client credentials."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace

import httpx
import pytest

from punte.identity import Account, create_app, load_accounts, new_account, save_accounts
from runtime.signing import SigningKey
from runtime.tokens import TokenIssuer, TokenVerifier

ISSUER = TokenIssuer("http://identity.test", SigningKey.generate("identity-1"))


def token_client(*accounts: Account) -> httpx.AsyncClient:
    app = create_app(ISSUER, {a.username: a for a in accounts})
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://identity.test")


async def test_a_person_signs_in_with_the_generated_password_and_gets_a_token_with_claims():
    account, password = new_account("cm.dgaspc-bc", "dgaspc-bc", ["case-manager"], "Manager de caz")
    assert password not in account.password_hash
    async with token_client(account) as client:
        answer = await client.post("/token", data={"grant_type": "password", "username": "cm.dgaspc-bc",
                                                   "password": password})
        wrong = await client.post("/token", data={"grant_type": "password", "username": "cm.dgaspc-bc",
                                                  "password": password + "x"})
        nobody = await client.post("/token", data={"grant_type": "password", "username": "cm.nobody",
                                                   "password": password})
        odd = await client.post("/token", data={"grant_type": "implicit"})
    assert answer.status_code == 200
    verifier = TokenVerifier(ISSUER.issuer, "punte", jwks=ISSUER.jwks())
    principal = await verifier.verify(answer.json()["access_token"])
    assert (principal.subject, principal.institution, principal.roles) == (
        "cm.dgaspc-bc", "dgaspc-bc", {"case-manager"})
    assert wrong.status_code == nobody.status_code == 400
    assert wrong.json()["error"] == nobody.json()["error"] == "invalid_grant"
    assert odd.json()["error"] == "unsupported_grant_type"


async def test_an_institution_system_uses_client_credentials(tmp_path):
    account, secret = new_account("sys.isj-bc", "isj-bc", ["institution-system"], "Sistemul ISJ")
    save_accounts(tmp_path / "accounts.json", [account])
    loaded = load_accounts(tmp_path / "accounts.json")
    assert loaded == {"sys.isj-bc": account}
    async with token_client(*loaded.values()) as client:
        answer = await client.post("/token", data={"grant_type": "client_credentials",
                                                   "client_id": "sys.isj-bc", "client_secret": secret})
    assert answer.status_code == 200 and answer.json()["token_type"] == "Bearer"


@pytest.mark.parametrize("given, accepted", [("right", True), ("wrong", False)])
async def test_accounts_from_an_older_state_folder_still_sign_in(given: str, accepted: bool):
    """accounts.json written before the fast hash holds scrypt hashes; they keep working."""
    password, salt = secrets.token_urlsafe(12), secrets.token_hex(16)
    scrypt = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=2**14, r=8, p=1).hex()
    account, _ = new_account("auditor", None, ["auditor"], "Auditor")
    old = replace(account, password_hash=scrypt, salt=salt)
    async with token_client(old) as client:
        answer = await client.post("/token", data={
            "grant_type": "password", "username": "auditor",
            "password": password if given == "right" else password + "x"})
    assert (answer.status_code == 200) is accepted
