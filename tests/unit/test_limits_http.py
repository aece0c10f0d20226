"""Limits at the HTTP edge, without infrastructure: every service refuses a body over the
documented maximum (413 TOO_LARGE), declared or streamed, and the embedded identity
provider's /token is throttled per client address (429 RATE_LIMITED with Retry-After)."""
from __future__ import annotations

import importlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from punte.accounts import new_account
from punte.identity import create_app as identity_app
from runtime.limits import BodyLimit, Limits
from runtime.service import create_app
from runtime.settings import Settings
from runtime.signing import SigningKey
from runtime.tokens import TokenIssuer

SERVICES = ["intake", "referral", "notification", "audit"]


def client_of(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://service.test")


def refused(answer: httpx.Response, status: int, code: str) -> bool:
    return answer.status_code == status and answer.json()["detail"]["code"] == code


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_refuses_a_body_over_the_maximum_before_reading_it(service):
    spec = importlib.import_module(f"services.{service}.bootstrap").SPEC
    app = create_app(spec, Settings(service=service))
    posts = [path for path, operations in app.openapi()["paths"].items() if "post" in operations]
    assert posts, f"{service} takes no POST"
    big = b"x" * (Settings().http_max_body_bytes + 1)
    async with client_of(app) as client:
        for path in posts:
            answer = await client.post(path.replace("{", "").replace("}", ""), content=big,
                                       headers={"Content-Type": "application/json"})
            assert refused(answer, 413, "TOO_LARGE"), (path, answer.status_code, answer.text[:200])
            assert answer.json()["detail"]["message_ro"], "the refusal in the common shape"


class Note(BaseModel):
    text: str


def small_app(max_bytes: int) -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodyLimit, max_bytes=max_bytes)

    @app.post("/parsed")
    async def parsed(note: Note) -> dict[str, int]:
        return {"length": len(note.text)}

    return app


async def chunks(size: int, pieces: int) -> AsyncIterator[bytes]:
    yield b'{"text": "'
    for _ in range(pieces):
        yield b"y" * size
    yield b'"}'


async def test_a_streamed_body_without_a_length_is_counted_and_refused():
    async with client_of(small_app(1000)) as client:
        fits = await client.post("/parsed", json={"text": "scurt"})
        streamed = await client.post("/parsed", content=chunks(300, 5),
                                     headers={"Content-Type": "application/json"})
        streamed_small = await client.post("/parsed", content=chunks(100, 2),
                                           headers={"Content-Type": "application/json"})
    assert fits.status_code == 200
    assert "content-length" not in streamed.request.headers, "sent chunked"
    assert refused(streamed, 413, "TOO_LARGE")
    assert streamed_small.status_code == 200 and streamed_small.json() == {"length": 200}


async def test_token_requests_are_throttled_per_client_address():
    issuer = TokenIssuer("http://identity.test", SigningKey.generate("identity-1"))
    account, password = new_account("cm.dgaspc-bc", "dgaspc-bc", ["case-manager"], "Manager de caz")
    app = identity_app(issuer, {account.username: account})
    app.state.limits = Limits(Settings(rate_token_per_address="3/minute"))
    form = {"grant_type": "password", "username": "cm.dgaspc-bc", "password": "nu-este-parola"}
    async with client_of(app) as client:
        guesses = [await client.post("/token", data=form) for _ in range(3)]
        over = await client.post("/token", data=form)
        right = await client.post("/token", data={**form, "password": password})
    assert [g.status_code for g in guesses] == [400, 400, 400]
    assert refused(over, 429, "RATE_LIMITED") and int(over.headers["Retry-After"]) >= 1
    assert refused(right, 429, "RATE_LIMITED"), "the address waits, whatever it sends"


async def test_one_accounts_guesses_do_not_lock_out_the_others_at_the_same_address():
    """Page sign-ins reach /token from their service's one address, and an office signs in
    from behind one NAT: the throttle counts per address and account."""
    issuer = TokenIssuer("http://identity.test", SigningKey.generate("identity-1"))
    ana, ana_password = new_account("cm.ana", "dgaspc-bc", ["case-manager"], "Ana")
    ion, ion_password = new_account("cm.ion", "dgaspc-bc", ["case-manager"], "Ion")
    app = identity_app(issuer, {ana.username: ana, ion.username: ion})
    app.state.limits = Limits(Settings(rate_token_per_address="3/minute"))
    guess = {"grant_type": "password", "username": "cm.ana", "password": "nu-este-parola"}
    async with client_of(app) as client:
        for _ in range(4):
            await client.post("/token", data=guess)
        ana_locked = await client.post("/token", data={**guess, "password": ana_password})
        ion_in = await client.post("/token", data={"grant_type": "password", "username": "cm.ion",
                                                   "password": ion_password})
    assert refused(ana_locked, 429, "RATE_LIMITED")
    assert ion_in.status_code == 200 and ion_in.json()["access_token"]
