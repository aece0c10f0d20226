"""The HTTP gateway, for a system without Kafka: the same signed CloudEvents, posted to
intake (``POST /v1/events``) with a token of the institution's system (OAuth 2.0 client
credentials, client id ``sys.<institution>``). The answer is the outcome itself: 200
accepted, 422 rejected (raised as Rejected), 202 still being processed (polled at its
``Location``). Any other refusal is raised as GatewayRefused with its code."""
from __future__ import annotations

import base64
import json
import time
from typing import Any, Literal
from urllib.parse import quote_plus

import httpx

from punte_sdk.deliveries import Outcome
from punte_sdk.errors import GatewayRefused, NoAnswerYet, TokenRefused
from punte_sdk.events import CONTENT_TYPE, Event

STRUCTURED = "application/cloudevents+json"
EVENTS_PATH = "/v1/events"
# What the gateway waits at most before it answers 202 (its `wait` query parameter).
MAX_WAIT = 30.0


def client_id_of(institution: str) -> str:
    """The OAuth client id of an institution's system."""
    return f"sys.{institution}"


def basic_authorization(client_id: str, secret: str) -> str:
    """HTTP Basic client authentication as RFC 6749 section 2.3.1 has it: id and secret
    each form-urlencoded, then joined by a colon and base64-encoded."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode("utf-8")
    return "Basic " + base64.b64encode(pair).decode("ascii")


def binary_request(event: Event) -> tuple[dict[str, str], bytes]:
    """Binary mode: the attributes as ``ce-`` headers, the body as sent to Kafka. HTTP
    headers are ASCII: an attribute that is not goes in structured mode instead."""
    headers = {f"ce-{k}": v for k, v in event.attributes().items()}
    if not all(v.isascii() for v in headers.values()):
        raise ValueError("an attribute is not ASCII: send this event in structured mode")
    return headers | {"Content-Type": CONTENT_TYPE}, event.body


def structured_request(event: Event) -> dict[str, Any]:
    """Structured mode (``application/cloudevents+json``) with the body as ``data_base64``,
    so the gateway takes exactly the bytes that were signed."""
    return event.attributes() | {"datacontenttype": CONTENT_TYPE,
                                 "data_base64": base64.b64encode(event.body).decode("ascii")}


def signed_bytes(structured: dict[str, Any] | str | bytes) -> bytes:
    """The bytes a structured request's signature must cover, as the gateway reads them:
    ``data_base64`` decoded, or ``data`` as compact UTF-8 JSON (no spaces, non-ASCII as
    is, keys in the order sent)."""
    request = json.loads(structured) if isinstance(structured, (str, bytes)) else structured
    if "data_base64" in request:
        return base64.b64decode(request["data_base64"], validate=True)
    if "data" in request:
        return json.dumps(request["data"], ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raise ValueError("a structured event has data or data_base64")


def _refusal(response: httpx.Response) -> GatewayRefused:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, dict) and detail.get("code"):
        return GatewayRefused(str(detail["code"]), str(detail.get("message_en") or detail["code"]),
                              str(detail.get("message_ro") or detail.get("message_en") or detail["code"]),
                              status=response.status_code, retry_after=response.headers.get("Retry-After"))
    return GatewayRefused(f"HTTP_{response.status_code}", response.text[:300] or response.reason_phrase,
                          status=response.status_code, retry_after=response.headers.get("Retry-After"))


class Gateway:
    """Intake's HTTP gateway for one institution's system.

    ``identity_url`` is the OpenID Connect issuer (its ``/.well-known/openid-configuration``
    names the token endpoint); ``client_auth`` is ``"basic"`` (HTTP Basic, the default) or
    ``"form"`` (``client_id`` and ``client_secret`` in the form)."""

    def __init__(self, intake_url: str, identity_url: str, institution: str, client_secret: str, *,
                 client_auth: Literal["basic", "form"] = "basic", client_id: str | None = None,
                 timeout: float = 40, client: httpx.Client | None = None) -> None:
        if client_auth not in ("basic", "form"):
            raise ValueError("client_auth is 'basic' or 'form'")
        self.intake_url = intake_url.rstrip("/")
        self.identity_url = identity_url.rstrip("/")
        self.institution = institution
        self.client_id = client_id or client_id_of(institution)
        self._secret = client_secret
        self.client_auth = client_auth
        self._http = client or httpx.Client(timeout=timeout)
        self._owns_http = client is None
        self._token: tuple[str, float] | None = None  # (token, monotonic time it expires)

    # --- token -----------------------------------------------------------------------------

    def token_endpoint(self) -> str:
        response = self._http.get(f"{self.identity_url}/.well-known/openid-configuration")
        response.raise_for_status()
        return str(response.json()["token_endpoint"])

    def token(self, *, fresh: bool = False) -> str:
        """An access token by client credentials, reused until a minute before it expires."""
        if self._token and not fresh and time.monotonic() < self._token[1]:
            return self._token[0]
        form = {"grant_type": "client_credentials"}
        headers = {}
        if self.client_auth == "basic":
            headers["Authorization"] = basic_authorization(self.client_id, self._secret)
        else:
            form |= {"client_id": self.client_id, "client_secret": self._secret}
        response = self._http.post(self.token_endpoint(), data=form, headers=headers)
        if response.status_code != 200:
            try:
                error = response.json()
            except ValueError:
                error = {}
            raise TokenRefused(str(error.get("error") or f"HTTP_{response.status_code}"),
                               error.get("error_description"), response.status_code)
        answer = response.json()
        lifetime = float(answer.get("expires_in") or 300)
        self._token = (str(answer["access_token"]), time.monotonic() + max(0.0, lifetime - 60))
        return self._token[0]

    def _authorized(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                    **kwargs: Any) -> httpx.Response:
        """A request with the token; once more with a new token if it was refused (expired)."""
        for fresh in (False, True):
            authorization = {"Authorization": f"Bearer {self.token(fresh=fresh)}"}
            response = self._http.request(method, url, headers={**(headers or {}), **authorization}, **kwargs)
            if response.status_code != 401:
                break
        return response

    # --- events ----------------------------------------------------------------------------

    def submit(self, event: Event, *, mode: Literal["binary", "structured"] = "structured",
               wait: float = 10, poll_for: float = 60, poll_every: float = 1) -> Outcome:
        """Post a signed event; the accepted outcome, or Rejected (its code and messages).
        The gateway holds the request up to ``wait`` seconds (at most 30) for the outcome;
        if it answers 202, its ``Location`` is polled for ``poll_for`` seconds more
        (NoAnswerYet after that; poll ``outcome`` later). Sending the same event again is
        safe: it is answered once, by its ``ce_id``."""
        if not event.signed:
            raise ValueError("sign the event first (InstitutionKey.sign)")
        if not 0 <= wait <= MAX_WAIT:
            raise ValueError(f"wait is between 0 and {MAX_WAIT} seconds")
        if mode == "binary":
            headers, body = binary_request(event)
        elif mode == "structured":
            headers = {"Content-Type": STRUCTURED}
            body = json.dumps(structured_request(event)).encode("utf-8")
        else:
            raise ValueError("mode is 'binary' or 'structured'")
        response = self._authorized("POST", self.intake_url + EVENTS_PATH, params={"wait": wait},
                                    headers=headers, content=body)
        if response.status_code == 202:
            location = response.headers.get("Location") or response.json()["location"]
            return self._poll(location, poll_for, poll_every)
        return self._answer(response)

    def outcome(self, event: Event | None = None, *, source: str | None = None,
                id: str | None = None) -> Outcome | None:
        """The outcome of an event sent before (accepted, or Rejected), None while there is none."""
        params = {"source": event.source, "id": event.id} if event else {"source": source, "id": id}
        response = self._authorized("GET", self.intake_url + EVENTS_PATH + "/outcome", params=params)
        return self._answer(response)

    def _poll(self, location: str, poll_for: float, every: float) -> Outcome:
        url = str(httpx.URL(self.intake_url + "/").join(location))
        deadline = time.monotonic() + poll_for
        while True:
            answer = self._answer(self._authorized("GET", url))
            if answer is not None:
                return answer
            if time.monotonic() >= deadline:
                raise NoAnswerYet(url)
            time.sleep(every)

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        """An outcome (200), Rejected (422 with an outcome), None (404 NOT_YET), or the refusal."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code in (200, 422) and isinstance(body, dict) and "status" in body:
            return Outcome.from_data(body).raise_if_rejected()
        if response.status_code == 404 and isinstance(body, dict) \
                and isinstance(body.get("detail"), dict) and body["detail"].get("code") == "NOT_YET":
            return None
        raise _refusal(response)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "Gateway":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

