"""Bearer tokens as the services check them: required claims, the algorithms a real
identity provider signs with (pinned by configuration, never `none` or HMAC), the issuer's
keys refreshed on a schedule and on an unknown key id, and refusals in the common shape."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI, HTTPException

from runtime.authorization import permit
from runtime.settings import Settings
from runtime.signing import SigningKey, b64url
from runtime.tokens import Principal, TokenIssuer, TokenVerifier

ISSUER_URL = "http://issuer.test"
ISSUER = TokenIssuer(ISSUER_URL, SigningKey.generate("ed-1"))
# A second key of the same issuer, RSA as Keycloak's default.
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rsa_jwk(kid: str = "rsa-1", key: rsa.RSAPrivateKey = RSA_KEY) -> dict[str, Any]:
    return {**jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER_URL, "aud": "punte", "sub": "cm.isj-bc", "iat": now, "exp": now + 300,
            "institution": "isj-bc", "roles": ["case-manager"]}
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def ed_token(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), ISSUER._key.private, algorithm="EdDSA", headers={"kid": "ed-1"})


def rs_token(kid: str = "rsa-1", key: rsa.RSAPrivateKey = RSA_KEY, algorithm: str = "RS256") -> str:
    return jwt.encode(claims(), key, algorithm=algorithm, headers={"kid": kid})


class FakeIssuer:
    """The identity provider's JWKS as the verifier fetches it, and a clock to move."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.now = 1000.0
        self.up = True

    async def fetch(self) -> dict[str, Any]:
        self.fetches += 1
        if not self.up:
            raise httpx.ConnectError("the issuer is away")
        return {"keys": list(self.keys)}

    def verifier(self, algorithms: str = "EdDSA,RS256,ES256,PS256", ttl: float = 300) -> TokenVerifier:
        return TokenVerifier(ISSUER_URL, "punte", algorithms=algorithms.split(","), jwks_ttl_seconds=ttl,
                             fetch=self.fetch, clock=lambda: self.now)


async def refusal(verifier: TokenVerifier, token: str) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPException) as refused:
        await verifier.verify(token)
    return refused.value.status_code, refused.value.detail


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "aud", "iss"])
async def test_a_token_without_a_required_claim_is_refused(missing: str):
    verifier = FakeIssuer(*ISSUER.jwks()["keys"]).verifier()
    assert (await verifier.verify(ed_token())).subject == "cm.isj-bc"
    status, detail = await refusal(verifier, ed_token(**{missing: None}))
    assert status == 401 and detail["code"] == "INVALID_TOKEN"
    assert detail["message_ro"] and missing in detail["message_en"]


async def test_an_expired_token_is_refused():
    verifier = FakeIssuer(*ISSUER.jwks()["keys"]).verifier()
    status, detail = await refusal(verifier, ed_token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600))
    assert (status, detail["code"]) == (401, "INVALID_TOKEN")


async def test_an_rs256_token_of_a_second_issuer_key_is_accepted_only_when_rs256_is_pinned():
    issuer = FakeIssuer(*ISSUER.jwks()["keys"], rsa_jwk())
    principal = await issuer.verifier("EdDSA,RS256").verify(rs_token())
    assert (principal.subject, principal.institution, principal.roles) == ("cm.isj-bc", "isj-bc", {"case-manager"})
    status, detail = await refusal(issuer.verifier("EdDSA"), rs_token())
    assert (status, detail["code"]) == (401, "INVALID_TOKEN")


async def test_ps256_and_es256_are_accepted_from_keys_that_do_not_name_their_algorithm():
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_jwk = {**jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "ec-1"}
    verifier = FakeIssuer(rsa_jwk("rsa-ps"), ec_jwk).verifier()
    assert (await verifier.verify(rs_token("rsa-ps", algorithm="PS256"))).subject == "cm.isj-bc"
    assert (await verifier.verify(rs_token("ec-1", key=ec_key, algorithm="ES256"))).subject == "cm.isj-bc"


async def test_a_key_that_names_its_algorithm_is_not_used_with_another():
    verifier = FakeIssuer({**rsa_jwk(), "alg": "RS256"}).verifier()
    status, detail = await refusal(verifier, rs_token(algorithm="PS256"))
    assert (status, detail["code"]) == (401, "INVALID_TOKEN")


@pytest.mark.parametrize("pinned", ["none", "HS256", "EdDSA,HS512"])
def test_none_and_hmac_can_never_be_pinned(pinned: str):
    with pytest.raises(ValueError):
        FakeIssuer().verifier(pinned)
    with pytest.raises(ValueError):
        Settings(oidc_algorithms=pinned).oidc_algorithm_list()


async def test_unsigned_and_hmac_tokens_are_refused():
    issuer = FakeIssuer(*ISSUER.jwks()["keys"], rsa_jwk())
    verifier = issuer.verifier()
    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"kid": "ed-1"})
    # The classic confusion: HMAC keyed with the RSA public key the JWKS publishes.
    public_pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = b".".join(b64url(json.dumps(part).encode()).encode()
                              for part in ({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, claims()))
    mac = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    confused = f"{signing_input.decode()}.{b64url(mac)}"
    for token in (unsigned, confused):
        status, detail = await refusal(verifier, token)
        assert (status, detail["code"]) == (401, "INVALID_TOKEN")


def test_settings_pin_the_algorithms_a_real_identity_provider_uses():
    assert Settings().oidc_algorithm_list() == ["EdDSA", "RS256", "ES256", "PS256"]
    assert Settings(oidc_algorithms="RS256").oidc_algorithm_list() == ["RS256"]
    assert Settings().oidc_jwks_ttl_seconds > 0


async def test_a_key_rotated_under_the_same_id_is_picked_up_after_the_cache_lifetime():
    old, new = RSA_KEY, rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer = FakeIssuer(rsa_jwk("rsa-1", old))
    verifier = issuer.verifier(ttl=300)
    assert await verifier.verify(rs_token("rsa-1", old))
    issuer.keys = [rsa_jwk("rsa-1", new)]
    issuer.now += 100  # within the lifetime: the cached key still answers
    assert (await refusal(verifier, rs_token("rsa-1", new)))[0] == 401
    issuer.now += 250  # past it: fetched again
    assert (await verifier.verify(rs_token("rsa-1", new))).subject == "cm.isj-bc"
    assert (await refusal(verifier, rs_token("rsa-1", old)))[0] == 401, "the withdrawn key is gone"


async def test_a_new_key_id_is_fetched_at_once_but_unknown_ids_cannot_make_us_hammer_the_issuer():
    issuer = FakeIssuer(*ISSUER.jwks()["keys"])
    verifier = issuer.verifier()
    await verifier.verify(ed_token())
    assert issuer.fetches == 1
    issuer.keys.append(rsa_jwk("rsa-new"))
    issuer.now += 60
    assert (await verifier.verify(rs_token("rsa-new"))).subject == "cm.isj-bc"
    assert issuer.fetches == 2
    for n in range(5):  # forged key ids, one after the other
        assert (await refusal(verifier, rs_token(f"forged-{n}")))[0] == 401
    assert issuer.fetches == 2


async def test_an_unreachable_issuer_is_a_503_until_keys_are_known_then_the_cached_keys_answer():
    issuer = FakeIssuer(*ISSUER.jwks()["keys"])
    issuer.up = False
    verifier = issuer.verifier(ttl=300)
    status, detail = await refusal(verifier, ed_token())
    assert (status, detail["code"]) == (503, "ISSUER_UNREACHABLE") and detail["message_ro"]
    issuer.up, issuer.now = True, issuer.now + 60
    assert await verifier.verify(ed_token())
    issuer.up, issuer.now = False, issuer.now + 1000  # past the lifetime, issuer away
    assert (await verifier.verify(ed_token())).subject == "cm.isj-bc"


async def test_requests_arriving_together_share_one_fetch_of_the_issuer_keys():
    import asyncio

    issuer = FakeIssuer(*ISSUER.jwks()["keys"])
    slow = issuer.fetch

    async def late() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return await slow()
    issuer.fetch = late  # type: ignore[method-assign]
    verifier = issuer.verifier()
    both = await asyncio.gather(verifier.verify(ed_token()), verifier.verify(ed_token()))
    assert [p.subject for p in both] == ["cm.isj-bc"] * 2 and issuer.fetches == 1


async def test_http_refusals_have_the_common_shape_and_say_bearer():
    app = FastAPI()

    class State:
        verifier = FakeIssuer(*ISSUER.jwks()["keys"]).verifier()
        settings = Settings()
    app.state.runtime = State()

    @app.get("/auditors-only")
    async def auditors_only(principal: Principal = Depends(permit("audit.search"))) -> dict:
        return {"subject": principal.subject}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://svc.test") as client:
        anonymous = await client.get("/auditors-only")
        garbage = await client.get("/auditors-only", headers={"Authorization": "Bearer not.a.token"})
        case_manager = await client.get("/auditors-only", headers={"Authorization": f"Bearer {ed_token()}"})
    assert anonymous.status_code == 401 and anonymous.json()["detail"]["code"] == "MISSING_TOKEN"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert garbage.status_code == 401 and garbage.json()["detail"]["code"] == "INVALID_TOKEN"
    assert "not.a.token" not in garbage.text
    assert case_manager.status_code == 403 and case_manager.json()["detail"]["code"] == "FORBIDDEN"
    for answer in (anonymous, garbage, case_manager):
        assert set(answer.json()["detail"]) == {"code", "message_ro", "message_en"}
