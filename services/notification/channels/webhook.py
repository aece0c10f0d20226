"""Signed webhooks to institutions' own systems, with retries, backoff and replay.

Each request is a CloudEvent in HTTP binary content mode: the attributes in ``ce-*``
headers, the data as the JSON body, signed by the network exactly as on Kafka
(runtime/signing.py): ``ce-keyid`` and ``ce-signature`` over ``signing_input``. Header
values are percent-encoded as the CloudEvents HTTP binding requires; the signature covers
the decoded values. ``Punte-Delivery-Id`` is the delivery's id, the same on every retry
and replay (but a row number of one database, which a restore may renumber).

Standard Webhooks (standardwebhooks.com, 1.0) headers ride along, so a receiver can use a
verifier written to it: ``webhook-id`` is the notification's id, which derives from the
event that caused it (ADR 0023), so it is the same on every retry, every replay and after a
restore from backup, and is the key to drop repeats by; ``webhook-timestamp`` is the
attempt's time (Unix seconds); ``webhook-signature`` holds, space-separated, "v1" (HMAC-SHA256
under the institution's own secret, adapters/webhook_secrets.py: what the ready-made
verifiers check) when the institution has a secret, and always "v1a" (the network's Ed25519
signature), both over ``{webhook-id}.{webhook-timestamp}.{body}`` and made at each attempt,
so a rotated secret applies to retries and replays too (decision 0040).

Outcomes: 2xx is delivered; any other 4xx but 408 and 429 (and 1xx/3xx) failed for good;
5xx, 408, 429, timeouts and connection errors are retried with exponential backoff until
``RetryPolicy.max_attempts``, then failed."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Mapping
from contextlib import nullcontext
from datetime import datetime
from typing import Any, NamedTuple

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.cloudevents import CloudEvent
from runtime.data_keys import DataKeys
from runtime.signing import SigningKey
from services.notification.adapters import deliveries, webhook_secrets
from services.notification.domain.retry import RetryPolicy

DELIVERY_ID = "Punte-Delivery-Id"
WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE = "webhook-id", "webhook-timestamp", "webhook-signature"
RETRYABLE_4XX = frozenset({408, 429})
_ERROR_BODY = 200


class Attempt(NamedTuple):
    ok: bool
    status_code: int | None  # None: no response (timeout, connection error)
    error: str | None


def retryable(status_code: int | None) -> bool:
    """Whether a failed attempt may succeed later."""
    return status_code is None or status_code >= 500 or status_code in RETRYABLE_4XX


def _encode(value: str) -> str:
    """Percent-encode a header value as the CloudEvents HTTP binding requires (space, '"',
    '%' and anything outside printable ASCII)."""
    if all(0x21 <= ord(c) <= 0x7E and c not in '"%' for c in value):
        return value
    out = []
    for c in value:
        if 0x21 <= ord(c) <= 0x7E and c not in '"%':
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode())
    return "".join(out)


def signed_request(event: CloudEvent, key: SigningKey) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the HTTP request carrying ``event``, signed with ``key``:
    the Kafka headers of the signed event, ``ce_`` becoming ``ce-``."""
    signed = key.sign(event)
    headers: dict[str, str] = {}
    for name, value in signed.headers():
        text = value.decode()
        if name.startswith("ce_"):
            headers["ce-" + name[3:]] = _encode(text)
        else:
            headers[name] = text
    # The event's id is derived from its cause and has no '.', as the spec requires.
    headers[WEBHOOK_ID] = event.id
    return signed.body(), headers


def standard_signature(webhook_id: str, timestamp: str, body: bytes, key: SigningKey) -> str:
    """Standard Webhooks' asymmetric signature ("v1a", Ed25519) over ``id.timestamp.body``."""
    signed = key.private.sign(f"{webhook_id}.{timestamp}.".encode() + body)
    return "v1a," + base64.b64encode(signed).decode()


def symmetric_signature(webhook_id: str, timestamp: str, body: bytes, secret: bytes) -> str:
    """Standard Webhooks' symmetric signature ("v1", HMAC-SHA256 under the institution's
    secret) over ``id.timestamp.body``."""
    digest = hmac.new(secret, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def attempt_headers(row: Any, now: datetime, signer: SigningKey | None,
                    secret: bytes | None = None) -> dict[str, str]:
    """The stored headers plus what belongs to this attempt: the delivery id, and the
    Standard Webhooks timestamp and signatures: "v1" with the institution's ``secret``,
    "v1a" with ``signer``, space-separated (none without either)."""
    # Rows queued before webhook-id was stored carry the notification id in their column.
    webhook_id = row.headers.get(WEBHOOK_ID) or row.notification_id
    timestamp = str(int(now.timestamp()))
    headers = {**row.headers, DELIVERY_ID: str(row.id), WEBHOOK_ID: webhook_id, WEBHOOK_TIMESTAMP: timestamp}
    body = bytes(row.payload)
    signatures = []
    if secret is not None:
        signatures.append(symmetric_signature(webhook_id, timestamp, body, secret))
    if signer is not None:
        signatures.append(standard_signature(webhook_id, timestamp, body, signer))
    if signatures:
        headers[WEBHOOK_SIGNATURE] = " ".join(signatures)
    return headers


async def enqueue_events(session: AsyncSession, key: SigningKey, sent: list[tuple[str, str, CloudEvent]],
                         now: datetime) -> None:
    """Sign each (institution, url, event: a CaseNotification, whose id is the notification
    id) and queue its delivery to ``url``, due at once; one insert for all."""
    queued = []
    for institution, url, event in sent:
        body, headers = signed_request(event, key)
        queued.append((event.id, institution, url, body, headers))
    await deliveries.enqueue_many(session, queued, now)


async def attempt(client: httpx.AsyncClient, row: Any, timeout: float | None = None,
                  headers: Mapping[str, str] | None = None) -> Attempt:
    """POST one delivery (with ``headers``, by default the stored ones and the delivery id);
    never raises for what the receiver or the network does."""
    headers = headers if headers is not None else {**row.headers, DELIVERY_ID: str(row.id)}
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    try:
        async with client.stream("POST", row.url, content=bytes(row.payload), headers=headers,
                                 **kwargs) as response:
            code = response.status_code
            if 200 <= code < 300:
                return Attempt(True, code, None)
            text = b""
            async for chunk in response.aiter_bytes():
                text += chunk
                if len(text) >= _ERROR_BODY:
                    break
            detail = text[:_ERROR_BODY].decode("utf-8", errors="replace").strip()
            return Attempt(False, code, f"HTTP {code}" + (f": {detail}" if detail else ""))
    except httpx.TimeoutException as exc:
        return Attempt(False, None, f"timeout: {type(exc).__name__}")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}")


async def deliver_due(session: AsyncSession, client: httpx.AsyncClient, policy: RetryPolicy,
                      now: datetime, signer: SigningKey | None = None, data_keys: DataKeys | None = None) -> int:
    """Attempt the deliveries due at ``now`` (up to ``policy.batch``), each signed as
    Standard Webhooks asks: by ``signer`` (v1a) and, with ``data_keys`` to open them, by
    the institution's secret where it has one (v1); and record each outcome, in one
    transaction (begun here unless the session is already in one; then the caller commits).
    The due rows stay locked meanwhile, so other senders skip them. The number of
    deliveries attempted."""
    began = not session.in_transaction()
    async with session.begin() if began else nullcontext():
        rows = await deliveries.due(session, now, policy.batch)
        if not rows:
            return 0
        keys = ({} if data_keys is None
                else await webhook_secrets.keys_of(session, data_keys, {r.institution for r in rows}))
        gate = asyncio.Semaphore(policy.concurrency)

        async def one(row: Any) -> Attempt:
            async with gate:
                headers = attempt_headers(row, now, signer, keys.get(row.institution))
                return await attempt(client, row, policy.timeout, headers)

        results = await asyncio.gather(*(one(row) for row in rows))
        for row, result in zip(rows, results, strict=True):
            tries = row.attempts + 1
            if result.ok:
                await deliveries.mark_delivered(session, row.id, result.status_code, now)
            elif retryable(result.status_code) and tries < policy.max_attempts:
                await deliveries.mark_retry(session, row.id, result.status_code,
                                            now + policy.delay(tries), result.error)
            else:
                await deliveries.mark_failed(session, row.id, result.status_code, result.error)
        return len(rows)
