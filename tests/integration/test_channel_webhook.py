"""Signed webhooks to institutions' systems, against a real HTTP receiver (uvicorn on
127.0.0.1) and the notification service's real database: retries with backoff, permanent
failures, the delivery log, and replay."""
from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook, WebhookVerificationError

from contracts.events import CaseNotification, EventType
from runtime.cloudevents import CloudEvent, decode
from runtime.signing import SigningKey, signing_input, unb64url
from services.notification.adapters import deliveries, webhook_secrets
from services.notification.adapters.deliveries import webhook_deliveries
from services.notification.channels.webhook import (
    DELIVERY_ID,
    RetryPolicy,
    deliver_due,
    enqueue_events,
    retryable,
)
from tests.integration.helpers import TEST_DATA_KEYS

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
FAST = RetryPolicy(base=0.001, factor=2, cap=0.01, max_attempts=8, timeout=5)
NETWORK = SigningKey.generate("network-2025-03")
INSTITUTION = "dgaspc-cluj"


# --- a real receiver ---------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    url: str
    seen: list[Received] = field(default_factory=list)


@asynccontextmanager
async def receiver(plan: Callable[[int], int]) -> AsyncIterator[Receiver]:
    """A FastAPI app served by uvicorn in this event loop; ``plan(n)`` is the status code
    of the n-th request (from 0). Every request is recorded."""
    app = FastAPI()
    seen: list[Received] = []

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        code = plan(len(seen))
        seen.append(Received(dict(request.headers), await request.body(), code))
        return Response(status_code=code, content=b"" if code < 300 else b"not now")

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # surfaces a startup error
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Receiver(f"http://127.0.0.1:{port}/hook", seen)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def flaky(failures: int) -> Callable[[int], int]:
    return lambda n: 503 if n < failures else 200


# --- the database and the event ------------------------------------------------------------


@pytest.fixture
def sessions(notification_database):
    return notification_database[1]


@pytest.fixture
async def client():
    async with httpx.AsyncClient() as c:
        yield c


def notification(n: int = 1) -> CloudEvent:
    data = CaseNotification(
        notification_id=f"ntf-{n:04d}", case_id="case-0042", referral_id="ref-7", kind="referral-requested",
        urgency="P1", categories=["neglijare"], recipient=INSTITUTION,
        summary_ro="Trimitere nouă: neglijare, urgență P1", summary_en="New referral: neglect, urgency P1",
    ).model_dump(mode="json")
    return CloudEvent.new(EventType.CASE_NOTIFICATION.value, "/punte/notification", data,
                          subject="case-0042", id=f"ntf-{n:04d}", time=T0)


async def enqueue(sessions, url: str, n: int = 1, institution: str = INSTITUTION) -> int:
    """Queue notification ``n`` for ``institution``'s webhook as notification does; its delivery id."""
    event = notification(n)
    async with sessions() as session, session.begin():
        await enqueue_events(session, NETWORK, [(institution, url, event)], T0)
        return await session.scalar(sa.select(sa.func.max(webhook_deliveries.c.id))
                                    .where(webhook_deliveries.c.notification_id == event.id))


async def row(sessions, id: int):
    async with sessions() as session:
        return (await session.execute(sa.select(webhook_deliveries).where(webhook_deliveries.c.id == id))).one()


async def drain(sessions, client, policy: RetryPolicy, now: datetime, rounds: int = 20) -> datetime:
    """Run the sender as its loop would, the clock moving a second between rounds (far
    past the millisecond backoff); the clock at the end."""
    for _ in range(rounds):
        async with sessions() as session:
            if not await deliver_due(session, client, policy, now, signer=NETWORK):
                return now
        now += timedelta(seconds=1)
    raise AssertionError(f"still delivering after {rounds} rounds")


# --- tests ---------------------------------------------------------------------------------


async def test_two_503s_then_delivered_exactly_once_with_backoff(sessions, client):
    async with receiver(flaky(2)) as hook:
        id = await enqueue(sessions, hook.url)

        async with sessions() as session:
            assert await deliver_due(session, client, FAST, T0) == 1
        first = await row(sessions, id)
        assert (first.status, first.attempts, first.last_status_code) == ("pending", 1, 503)
        assert first.next_attempt_at == T0 + timedelta(milliseconds=1)
        assert "503" in first.last_error
        # Not due before its backoff has passed.
        async with sessions() as session:
            assert await deliver_due(session, client, FAST, T0) == 0

        await drain(sessions, client, FAST, T0 + timedelta(milliseconds=1))

    done = await row(sessions, id)
    assert (done.status, done.attempts, done.last_status_code, done.last_error) == ("delivered", 3, 200, None)
    assert done.delivered_at is not None
    assert [r.answered for r in hook.seen] == [503, 503, 200]
    assert sum(r.answered == 200 for r in hook.seen) == 1, "the event arrived exactly once"
    assert {r.headers[DELIVERY_ID.lower()] for r in hook.seen} == {str(id)}
    assert all(r.body == done.payload for r in hook.seen), "every attempt sends the exact stored body"
    assert json.loads(hook.seen[-1].body)["notification_id"] == "ntf-0001"


async def test_the_request_is_a_binary_cloudevent_signed_by_the_network(sessions, client):
    async with receiver(flaky(0)) as hook:
        await enqueue(sessions, hook.url)
        await drain(sessions, client, FAST, T0)

    (got,) = hook.seen
    h = {k: unquote(v) for k, v in got.headers.items()}
    assert h["content-type"] == "application/json"
    assert (h["ce-specversion"], h["ce-id"], h["ce-type"], h["ce-source"], h["ce-subject"]) == (
        "1.0", "ntf-0001", EventType.CASE_NOTIFICATION.value, "/punte/notification", "case-0042")
    assert h["ce-keyid"] == NETWORK.key_id

    public = Ed25519PublicKey.from_public_bytes(NETWORK.public_raw())
    signed = signing_input(h["ce-id"], h["ce-source"], h["ce-type"], h["ce-time"], h["ce-subject"], got.body)
    public.verify(unb64url(h["ce-signature"]), signed)  # raises if it does not verify
    with pytest.raises(InvalidSignature):
        public.verify(unb64url(h["ce-signature"]), signed.replace(b"P1", b"P0"))

    # The same signature the network puts on Kafka: the event reads back through the
    # Kafka decoder with identical extensions.
    event = decode([(k.replace("ce-", "ce_", 1), v.encode()) for k, v in h.items() if k.startswith("ce-")]
                   + [("content-type", h["content-type"].encode())], got.body)
    assert event.data == notification().data
    assert event.extensions == NETWORK.sign(notification()).extensions


async def test_404_fails_for_good_without_retrying(sessions, client):
    async with receiver(lambda n: 404) as hook:
        id = await enqueue(sessions, hook.url)
        end = await drain(sessions, client, FAST, T0)
        async with sessions() as session:  # much later: still nothing to do
            assert await deliver_due(session, client, FAST, end + timedelta(days=1)) == 0

    failed = await row(sessions, id)
    assert (failed.status, failed.attempts, failed.last_status_code) == ("failed", 1, 404)
    assert "404" in failed.last_error
    assert len(hook.seen) == 1


async def test_retries_stop_at_max_attempts(sessions, client):
    policy = RetryPolicy(base=0.001, cap=0.01, max_attempts=4, timeout=5)
    async with receiver(lambda n: 503) as hook:
        always_down = await enqueue(sessions, hook.url, 1)
        # Nothing listens there: connection refused, retried like a 5xx.
        async with receiver(lambda n: 200) as gone:
            closed_url = gone.url
        refused = await enqueue(sessions, closed_url, 2)
        await drain(sessions, client, policy, T0)

    assert len(hook.seen) == 4
    down = await row(sessions, always_down)
    assert (down.status, down.attempts, down.last_status_code) == ("failed", 4, 503)
    unreachable = await row(sessions, refused)
    assert (unreachable.status, unreachable.attempts, unreachable.last_status_code) == ("failed", 4, None)
    assert unreachable.last_error


async def test_replay_sends_a_delivered_row_again_with_the_same_delivery_id(sessions, client):
    async with receiver(flaky(0)) as hook:
        id = await enqueue(sessions, hook.url)
        other = await enqueue(sessions, hook.url, 2, institution="dgaspc-bihor")
        end = await drain(sessions, client, FAST, T0)
        assert (await row(sessions, id)).status == "delivered"

        async with sessions() as session, session.begin():
            assert await deliveries.replay(session, ids=[id], now=end) == 1
        back = await row(sessions, id)
        assert (back.status, back.attempts, back.delivered_at) == ("pending", 0, None)

        await drain(sessions, client, FAST, end)

        # Replay by institution: only that institution's rows.
        async with sessions() as session, session.begin():
            assert await deliveries.replay(session, institution="dgaspc-bihor", status="delivered",
                                           now=end) == 1
        await drain(sessions, client, FAST, end)

    again = await row(sessions, id)
    assert (again.status, again.attempts) == ("delivered", 1)
    ids = [r.headers[DELIVERY_ID.lower()] for r in hook.seen]
    assert ids.count(str(id)) == 2, "the receiver deduplicates by the repeated delivery id"
    assert ids.count(str(other)) == 2
    assert hook.seen[0].body == hook.seen[2].body

    async with sessions() as session:
        log = await deliveries.list_for(session, INSTITUTION)
    assert [(r.id, r.notification_id, r.status) for r in log] == [(id, "ntf-0001", "delivered")]


async def test_due_rows_are_locked_so_two_senders_never_share_one(sessions):
    for n in range(4):
        await enqueue(sessions, "http://127.0.0.1:9/never", n)
    async with sessions() as first, first.begin():
        held = await deliveries.due(first, T0, limit=3)
        async with sessions() as second, second.begin():
            rest = await deliveries.due(second, T0, limit=10)
    assert len(held) == 3 and len(rest) == 1
    assert not {r.id for r in held} & {r.id for r in rest}


def test_backoff_doubles_from_two_seconds_up_to_ten_minutes_over_eight_attempts():
    policy = RetryPolicy()
    assert [policy.delay(n).total_seconds() for n in range(1, 10)] == [2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert policy.delay(12) == timedelta(minutes=10)
    assert policy.max_attempts == 8
    assert [code for code in (200, 301, 400, 401, 404, 408, 409, 422, 429, 500, 503, None)
            if retryable(code)] == [408, 429, 500, 503, None]


async def test_every_attempt_carries_standard_webhooks_headers_with_the_notifications_id(sessions, client):
    """Standard Webhooks: ``webhook-id`` is the notification's id on every retry and replay
    (and after a restore, since it derives from the event: ADR 0023), ``webhook-timestamp``
    the attempt's time, ``webhook-signature`` the network's Ed25519 signature (v1a) over
    ``id.timestamp.body``."""
    async with receiver(flaky(1)) as hook:
        id = await enqueue(sessions, hook.url)
        end = await drain(sessions, client, FAST, T0)
        async with sessions() as session, session.begin():
            await deliveries.replay(session, ids=[id], now=end)
        await drain(sessions, client, FAST, end + timedelta(minutes=10))

    assert len(hook.seen) == 3
    assert {r.headers["webhook-id"] for r in hook.seen} == {"ntf-0001"}
    stamps = [int(r.headers["webhook-timestamp"]) for r in hook.seen]
    assert stamps[0] == int(T0.timestamp()) and stamps[-1] > stamps[0], "the attempt's time, not the event's"
    public = Ed25519PublicKey.from_public_bytes(NETWORK.public_raw())
    for got in hook.seen:
        version, _, signature = got.headers["webhook-signature"].partition(",")
        assert version == "v1a"
        signed = f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode() + got.body
        public.verify(base64.b64decode(signature), signed)  # raises if it does not verify


async def test_a_delivery_verifies_with_the_standardwebhooks_package_and_the_network_key(sessions, client):
    """Standard Webhooks' own verifier (the ``standardwebhooks`` package checks only "v1",
    HMAC under the institution's ``whsec_`` secret) accepts a real delivery, and "v1a" still
    verifies with the network's public key; a tampered body fails both. An institution
    without a secret gets v1a only, which that verifier refuses: nothing is sent unsigned
    or signed under a default key."""
    now = datetime.now(timezone.utc)  # the verifier holds the timestamp to 5 minutes of its clock
    async with sessions() as session, session.begin():
        secret = await webhook_secrets.issue(session, TEST_DATA_KEYS, INSTITUTION, now)
        made = await webhook_secrets.created_at(session, INSTITUTION)
    assert secret.startswith("whsec_") and made == now
    async with sessions() as session:  # kept sealed: the secret's bytes are not in the row
        sealed = await session.scalar(sa.select(webhook_secrets.webhook_secrets.c.sealed)
                                      .where(webhook_secrets.webhook_secrets.c.institution == INSTITUTION))
    assert base64.b64decode(secret.removeprefix("whsec_")) not in bytes(sealed)

    async with receiver(flaky(0)) as hook:
        await enqueue(sessions, hook.url, 1)
        await enqueue(sessions, hook.url, 2, institution="dgaspc-bihor")  # no secret
        async with sessions() as session:
            assert await deliver_due(session, client, FAST, now, signer=NETWORK, data_keys=TEST_DATA_KEYS) == 2

    got = {json.loads(r.body)["notification_id"]: r for r in hook.seen}
    signed, unsigned = got["ntf-0001"], got["ntf-0002"]
    assert [s.split(",")[0] for s in signed.headers["webhook-signature"].split(" ")] == ["v1", "v1a"]
    assert Webhook(secret).verify(signed.body, signed.headers)["notification_id"] == "ntf-0001"

    public = Ed25519PublicKey.from_public_bytes(NETWORK.public_raw())
    v1a = signed.headers["webhook-signature"].split(" ")[1].removeprefix("v1a,")
    message = f"{signed.headers['webhook-id']}.{signed.headers['webhook-timestamp']}.".encode()
    public.verify(base64.b64decode(v1a), message + signed.body)

    tampered = signed.body.replace(b"P1", b"P0")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, signed.headers)
    with pytest.raises(InvalidSignature):
        public.verify(base64.b64decode(v1a), message + tampered)

    assert unsigned.headers["webhook-signature"].startswith("v1a,") and " " not in unsigned.headers["webhook-signature"]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(unsigned.body, unsigned.headers)


async def test_a_rotated_secret_signs_the_next_attempt_and_the_old_one_no_longer_verifies(sessions, client):
    now = datetime.now(timezone.utc)
    async with sessions() as session, session.begin():
        old = await webhook_secrets.issue(session, TEST_DATA_KEYS, INSTITUTION, now)
    async with receiver(flaky(1)) as hook:
        await enqueue(sessions, hook.url, 3)
        async with sessions() as session:
            await deliver_due(session, client, FAST, now, signer=NETWORK, data_keys=TEST_DATA_KEYS)
        async with sessions() as session, session.begin():
            new = await webhook_secrets.issue(session, TEST_DATA_KEYS, INSTITUTION, now)
        await drain_keyed(sessions, client, now + timedelta(seconds=1))

    first, retried = hook.seen
    assert new != old
    Webhook(old).verify(first.body, first.headers)
    Webhook(new).verify(retried.body, retried.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(retried.body, retried.headers)


async def drain_keyed(sessions, client, now: datetime) -> None:
    for _ in range(5):
        async with sessions() as session:
            if not await deliver_due(session, client, FAST, now, signer=NETWORK, data_keys=TEST_DATA_KEYS):
                return
        now += timedelta(seconds=1)
