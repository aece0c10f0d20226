"""The gateway client against a stand-in of intake and the identity provider (httpx's
MockTransport): what it sends, and how each answer becomes an outcome or a typed refusal.
The real gateway is exercised in tests/e2e/test_sdk_python.py."""
from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, unquote_plus

import httpx
import pytest

from punte_sdk import (
    Event,
    Gateway,
    GatewayRefused,
    InstitutionKey,
    NoAnswerYet,
    Rejected,
    TokenRefused,
    basic_authorization,
)

KEY = InstitutionKey.from_jwk({"kty": "OKP", "crv": "Ed25519", "kid": "spas-colonesti-test-1",
                               "d": base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")})
EVENT = KEY.sign(Event.new("spas-colonesti", "ro.punte.report.submitted.v3", {"n": "ăî"}))
ACCEPTED = {"subject_id": EVENT.id, "subject_type": EVENT.type, "status": "accepted", "reason": None,
            "case_id": "case-1", "urgency": "P2", "informed": ["spas-colonesti"], "merged": False,
            "possible_duplicate_of": []}
REASON = {"code": "SEALED_MISMATCH", "message_ro": "Partea sigilată nu aparține raportului.",
          "message_en": "The sealed part belongs to another report."}


class Network:
    """Identity and intake in one transport; ``answers`` are intake's answers to POST /v1/events."""

    def __init__(self, *answers: httpx.Response, token_status: int = 200) -> None:
        self.answers = list(answers)
        self.token_status = token_status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"token_endpoint": "http://identity.test/token"})
        if request.url.path == "/token":
            if self.token_status != 200:
                return httpx.Response(self.token_status, json={"error": "invalid_client",
                                                               "error_description": "unknown client"})
            return httpx.Response(200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600})
        return self.answers.pop(0)

    def gateway(self, **options) -> Gateway:
        return Gateway("http://intake.test", "http://identity.test", "spas-colonesti", "s3cret:+/ă",
                       client=httpx.Client(transport=httpx.MockTransport(self)), **options)

    def posted(self) -> httpx.Request:
        return next(r for r in self.requests if r.method == "POST" and r.url.path == "/v1/events")

    def token_request(self) -> httpx.Request:
        return next(r for r in self.requests if r.url.path == "/token")


def test_the_client_authenticates_with_http_basic_form_urlencoded_first():
    """RFC 6749 section 2.3.1: id and secret each form-urlencoded, then base64."""
    network = Network(httpx.Response(200, json=ACCEPTED))
    network.gateway().submit(EVENT)
    sent = network.token_request()
    assert parse_qs(sent.content.decode()) == {"grant_type": ["client_credentials"]}
    encoded = base64.b64decode(sent.headers["Authorization"].removeprefix("Basic ")).decode()
    client_id, secret = (unquote_plus(part) for part in encoded.split(":"))
    assert (client_id, secret) == ("sys.spas-colonesti", "s3cret:+/ă")
    assert basic_authorization("a b", "c") == "Basic " + base64.b64encode(b"a+b:c").decode()


def test_the_client_may_authenticate_in_the_form():
    network = Network(httpx.Response(200, json=ACCEPTED))
    network.gateway(client_auth="form").submit(EVENT)
    sent = network.token_request()
    assert "Authorization" not in sent.headers
    assert parse_qs(sent.content.decode()) == {"grant_type": ["client_credentials"],
                                               "client_id": ["sys.spas-colonesti"],
                                               "client_secret": ["s3cret:+/ă"]}


def test_structured_mode_sends_the_signed_bytes_as_data_base64():
    network = Network(httpx.Response(200, json=ACCEPTED))
    outcome = network.gateway().submit(EVENT, wait=5)
    assert outcome.accepted and outcome.case_id == "case-1"
    posted = network.posted()
    assert posted.headers["Content-Type"] == "application/cloudevents+json"
    assert posted.headers["Authorization"] == "Bearer t" and posted.url.params["wait"] == "5"
    body = json.loads(posted.content)
    assert base64.b64decode(body["data_base64"]) == EVENT.body and "data" not in body
    assert (body["id"], body["signature"], body["sigversion"]) == (EVENT.id, EVENT.signature, "2")


def test_binary_mode_sends_ce_headers_and_the_body_as_is():
    network = Network(httpx.Response(200, json=ACCEPTED))
    network.gateway().submit(EVENT, mode="binary")
    posted = network.posted()
    assert posted.content == EVENT.body and posted.headers["Content-Type"] == "application/json"
    assert {k: posted.headers[f"ce-{k}"] for k in ("id", "source", "keyid", "signature", "sigversion")} == {
        "id": EVENT.id, "source": EVENT.source, "keyid": EVENT.keyid, "signature": EVENT.signature,
        "sigversion": "2"}


def test_a_rejected_outcome_is_raised_with_its_code_and_both_messages():
    rejected = {**ACCEPTED, "status": "rejected", "reason": REASON, "case_id": None}
    with pytest.raises(Rejected) as raised:
        Network(httpx.Response(422, json=rejected)).gateway().submit(EVENT)
    assert (raised.value.code, raised.value.message_ro, raised.value.message_en) == (
        REASON["code"], REASON["message_ro"], REASON["message_en"])
    assert raised.value.outcome.subject_id == EVENT.id


@pytest.mark.parametrize("status, code", [(400, "MALFORMED_ENVELOPE"), (403, "SOURCE_MISMATCH"),
                                          (413, "TOO_LARGE"), (422, "CLEAR_REPORT_RETIRED"),
                                          (429, "RATE_LIMITED")])
def test_a_refusal_before_any_outcome_is_raised_with_its_code(status, code):
    detail = {"code": code, "message_ro": "mesaj", "message_en": "message"}
    answer = httpx.Response(status, json={"detail": detail}, headers={"Retry-After": "3"} if status == 429 else {})
    with pytest.raises(GatewayRefused) as raised:
        Network(answer).gateway().submit(EVENT)
    assert (raised.value.code, raised.value.status, raised.value.message_ro) == (code, status, "mesaj")
    assert raised.value.retry_after == ("3" if status == 429 else None)


def test_a_202_is_polled_at_its_location_until_the_outcome():
    location = f"/v1/events/outcome?source=%2Finstitutions%2Fspas-colonesti&id={EVENT.id}"
    not_yet = {"detail": {"code": "NOT_YET", "message_ro": "încă nu", "message_en": "no answer yet"}}
    network = Network(httpx.Response(202, json={"status": "processing", "location": location},
                                     headers={"Location": location}),
                      httpx.Response(404, json=not_yet), httpx.Response(200, json=ACCEPTED))
    assert network.gateway().submit(EVENT, poll_every=0).accepted
    polled = [r for r in network.requests if r.url.path == "/v1/events/outcome"]
    assert len(polled) == 2 and polled[0].url.params["id"] == EVENT.id


def test_no_answer_in_time_says_where_to_poll():
    location = f"/v1/events/outcome?source=x&id={EVENT.id}"
    not_yet = {"detail": {"code": "NOT_YET", "message_ro": "încă nu", "message_en": "no answer yet"}}
    network = Network(httpx.Response(202, json={"status": "processing", "location": location},
                                     headers={"Location": location}), httpx.Response(404, json=not_yet))
    with pytest.raises(NoAnswerYet) as raised:
        network.gateway().submit(EVENT, poll_for=0)
    assert raised.value.location == "http://intake.test" + location


def test_wrong_credentials_are_a_token_refusal():
    with pytest.raises(TokenRefused) as raised:
        Network(token_status=401).gateway().submit(EVENT)
    assert (raised.value.error, raised.value.status) == ("invalid_client", 401)


def test_an_unsigned_event_is_not_sent():
    network = Network()
    with pytest.raises(ValueError):
        network.gateway().submit(EVENT.without_signature())
    assert network.requests == []
