"""The embedded default's token issuer: accounts, the password grant and client credentials."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace

import httpx
import pytest

from punte.accounts import Account, load_accounts, new_account, save_accounts
from punte.identity import create_app
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


PERSON, PERSON_SECRET = new_account("cm.isj-bc", "isj-bc", ["case-manager"], "Manager de caz ISJ")
SYSTEM, SYSTEM_SECRET = new_account("sys.isj-bc", "isj-bc", ["institution-system"], "Sistemul ISJ")


@pytest.mark.parametrize("form", [
    {"grant_type": "password", "username": "sys.isj-bc", "password": SYSTEM_SECRET},
    {"grant_type": "client_credentials", "client_id": "cm.isj-bc", "client_secret": PERSON_SECRET},
], ids=["system-with-password", "person-with-client-credentials"])
async def test_each_grant_type_is_only_for_its_kind_of_account(form: dict[str, str]):
    async with token_client(PERSON, SYSTEM) as client:
        answer = await client.post("/token", data=form)
    assert answer.status_code == 400 and answer.json()["error"] == "unauthorized_client"
    assert "access_token" not in answer.json()


async def test_a_grant_type_mismatch_is_told_only_to_whoever_knows_the_secret():
    """A wrong secret is a wrong secret, whatever the account: no probing for system accounts."""
    async with token_client(PERSON, SYSTEM) as client:
        answer = await client.post("/token", data={"grant_type": "password", "username": "sys.isj-bc",
                                                   "password": "guess"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


async def test_an_institution_system_may_authenticate_with_http_basic():
    """RFC 6749 section 2.3.1: client id and secret form-encoded, then in a Basic header."""
    async with token_client(SYSTEM) as client:
        answer = await client.post("/token", data={"grant_type": "client_credentials"},
                                   auth=httpx.BasicAuth("sys.isj-bc", SYSTEM_SECRET))
        wrong = await client.post("/token", data={"grant_type": "client_credentials"},
                                  auth=httpx.BasicAuth("sys.isj-bc", SYSTEM_SECRET + "x"))
        both = await client.post("/token", data={"grant_type": "client_credentials", "client_id": "sys.isj-bc",
                                                  "client_secret": SYSTEM_SECRET},
                                 auth=httpx.BasicAuth("sys.isj-bc", SYSTEM_SECRET))
    assert answer.status_code == 200
    principal = await TokenVerifier(ISSUER.issuer, "punte", jwks=ISSUER.jwks()).verify(answer.json()["access_token"])
    assert (principal.subject, principal.roles) == ("sys.isj-bc", {"institution-system"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    assert both.status_code == 400 and both.json()["error"] == "invalid_request", "one method at a time"


async def test_a_client_secret_with_reserved_characters_is_form_decoded_from_basic():
    weird = Account("sys.dsp-bc", "", "", "dsp-bc", ["institution-system"], "Sistemul DSP")
    salt = secrets.token_hex(16)
    secret = "a:b%c+d é"
    from punte.accounts import hash_password
    weird = replace(weird, password_hash=hash_password(secret, salt), salt=salt)
    from urllib.parse import quote_plus
    async with token_client(weird) as client:
        answer = await client.post("/token", data={"grant_type": "client_credentials"},
                                   auth=httpx.BasicAuth(quote_plus("sys.dsp-bc"), quote_plus(secret)))
    assert answer.status_code == 200
