"""The inbox of an institution's people: list what they were told, mark it read."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.background import BackgroundTask

from contracts.access import Relation, visible_categories
from contracts.events import Urgency
from contracts.reference import institutions, risk_categories
from contracts.refusals import reason
from runtime.authorization import check, permit
from runtime.control_characters import has_control_characters
from runtime.limits import limits_of
from runtime.tokens import Principal
from runtime.web_pages import refusal
from services.notification.adapters import alerting, deliveries, people, webhook_secrets
from services.notification.adapters import preferences as preference_store
from services.notification.adapters.tables import inbox_entries
from services.notification.domain.messages import summarise
from services.notification.domain.recipients import Channel, Preference, PreferenceRefused, Recipients

Kind = Literal["referral-requested", "case-informed", "referral-accepted", "report-added",
               "referral-updated", "referral-overdue", "referral-returned", "case-accessed"]

router = APIRouter(tags=["inbox"])
CONFIG = "notification_config"  # Runtime.extras key, set by bootstrap.configure
MAX_INT64 = 2**63 - 1  # ids are PostgreSQL bigints: anything larger would fail in the database
MAX_REPLAY_IDS = 1000


class InboxEntry(BaseModel):
    notification_id: str
    institution: str
    case_id: str
    referral_id: str | None
    kind: Kind
    urgency: Urgency
    categories: list[str]
    summary_ro: str
    summary_en: str
    created_at: datetime
    read_at: datetime | None
    do_not_contact: bool = False
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None

    @model_validator(mode="after")
    def _need_to_know(self) -> "InboxEntry":
        """Need to know on the way out too, whatever reads the table (list, stream, read,
        ack): entries are stored cut to what the institution may know, but one stored before
        the rule failed closed may hold more. Such an entry shows only what may be known,
        and its summary is said again from that (without the referral's state)."""
        shown = list(visible_categories(self.institution, self.categories))
        if shown != self.categories:
            again = summarise(self.kind, self.urgency.value, shown, self.case_id, risk_categories(),
                              self.do_not_contact)
            self.categories, self.summary_ro, self.summary_en = shown, again.ro, again.en
        return self


class Inbox(BaseModel):
    institution: str
    unread: int
    entries: list[InboxEntry]


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.runtime.sessions() as session:
        yield session


def _institution(principal: Principal, entry: bool = False) -> str:
    """The asker's institution. Without one (an auditor, the operator) there is no inbox
    of its own: an entry is as unknown as another institution's, anything else is not
    for its role (contracts.access: the relation `own` does not hold)."""
    if not principal.institution:
        if entry:
            raise _not_found()
        raise HTTPException(403, detail=reason("FORBIDDEN", "the token names no institution"))
    return principal.institution


def _not_found() -> HTTPException:
    # Another institution's entry is indistinguishable from a missing one.
    return refusal(404, "NOT_FOUND", "Notificare inexistentă.", "No such notification.")


def _notification_id(notification_id: str) -> str:
    """An id with a control character names no notification (and never reaches the database)."""
    if has_control_characters(notification_id):
        raise _not_found()
    return notification_id


@router.get("/inbox", response_model=Inbox)
async def list_inbox(
    kind: Kind | None = None, urgency: Urgency | None = None,
    limit: int = Query(50, ge=1, le=200),
    principal: Principal = Depends(permit("inbox.read")),
    session: AsyncSession = Depends(_session),
) -> Inbox:
    institution = _institution(principal)
    own = inbox_entries.c.institution == institution
    query = sa.select(inbox_entries).where(own)
    if kind is not None:
        query = query.where(inbox_entries.c.kind == kind)
    if urgency is not None:
        query = query.where(inbox_entries.c.urgency == urgency.value)
    rows = (await session.execute(
        query.order_by(inbox_entries.c.created_at.desc(), inbox_entries.c.notification_id)
        .limit(limit)
    )).mappings()
    unread = await session.scalar(sa.select(sa.func.count()).select_from(inbox_entries)
                                  .where(own, inbox_entries.c.read_at.is_(None)))
    return Inbox(institution=institution, unread=unread or 0,
                 entries=[InboxEntry.model_validate(dict(r)) for r in rows])


@router.post("/inbox/{notification_id}/read", response_model=InboxEntry)
async def mark_read(
    notification_id: str,
    principal: Principal = Depends(permit("inbox.act")),
    session: AsyncSession = Depends(_session),
) -> InboxEntry:
    institution = _institution(principal, entry=True)
    notification_id = _notification_id(notification_id)
    async with session.begin():
        # Marking twice keeps the first time it was read.
        row = (await session.execute(
            sa.update(inbox_entries)
            .where(inbox_entries.c.notification_id == notification_id,
                   inbox_entries.c.institution == institution)
            .values(read_at=sa.func.coalesce(inbox_entries.c.read_at, datetime.now(timezone.utc)))
            .returning(*inbox_entries.c)
        )).mappings().first()
    if row is None:
        # Another institution's entry is indistinguishable from a missing one.
        raise _not_found()
    return InboxEntry.model_validate(dict(row))


@router.post("/inbox/{notification_id}/ack", response_model=InboxEntry,
             summary="Confirm că am preluat / acknowledge (stops a P0 alert's re-sending and escalation)")
async def acknowledge(
    notification_id: str,
    principal: Principal = Depends(permit("inbox.act")),
    session: AsyncSession = Depends(_session),
) -> InboxEntry:
    """Anyone of the institution may acknowledge; the first acknowledgement is kept (who
    and when), and it counts as reading the entry too."""
    institution = _institution(principal, entry=True)
    notification_id = _notification_id(notification_id)
    async with session.begin():
        row = await alerting.acknowledge(session, notification_id, institution, principal.subject,
                                         datetime.now(timezone.utc))
    if row is None:
        raise _not_found()
    return InboxEntry.model_validate(dict(row))


STREAM_POLL_SECONDS = 1.0


@router.get("/inbox/stream", summary="Inboxul în timp real / the inbox, live (server-sent events)")
async def stream(request: Request, principal: Principal = Depends(permit("inbox.read"))) -> StreamingResponse:
    """New entries of my institution's inbox as server-sent events (`event: entry`, the
    entry as JSON), from the moment of connecting; a comment line every poll keeps proxies
    from closing an idle stream. Open streams are capped per institution and in all
    (429 RATE_LIMITED; PUNTE_STREAMS_PER_INSTITUTION, PUNTE_STREAMS_TOTAL)."""
    institution = _institution(principal)
    sessions = request.app.state.runtime.sessions
    slot = limits_of(request.app).streams.take(institution)

    async def events() -> AsyncIterator[str]:
        # Entries are stamped when their event was taken up, a moment before they commit:
        # look a little back, and never send one twice.
        since = datetime.now(timezone.utc) - timedelta(seconds=5)
        seen: set[str] = set()
        yield ": connected\n\n"
        while not await request.is_disconnected():
            async with sessions() as session:
                rows = (await session.execute(
                    sa.select(inbox_entries).where(inbox_entries.c.institution == institution,
                                                   inbox_entries.c.created_at >= since)
                    .order_by(inbox_entries.c.created_at))).mappings().all()
            for row in rows:
                if row["notification_id"] in seen:
                    continue
                seen.add(row["notification_id"])
                entry = InboxEntry.model_validate(dict(row))
                yield f"event: entry\nid: {entry.notification_id}\ndata: {entry.model_dump_json()}\n\n"
            yield ": keep-alive\n\n"
            await asyncio.sleep(STREAM_POLL_SECONDS)

    # The slot is freed when the client goes away, or after the response if it never started.
    return StreamingResponse(slot.around(events()), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
                             background=BackgroundTask(slot.aclose))


# --- delivery status, preferences, the webhook delivery log ---------------------------------


class PersonDelivery(BaseModel):
    person: str
    channel: str
    address: str
    purpose: str
    round: int
    status: str
    attempts: int
    due_at: datetime
    sent_at: datetime | None
    last_error: str | None


class WebhookDelivery(BaseModel):
    id: int
    notification_id: str
    url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryStatus(BaseModel):
    notification_id: str
    read_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    people: list[PersonDelivery]
    webhooks: list[WebhookDelivery]



@router.get("/inbox/{notification_id}/deliveries", response_model=DeliveryStatus,
            summary="Cui și cum a fost trimisă / who was told, how, and whether it arrived")
async def delivery_status(
    notification_id: str,
    principal: Principal = Depends(permit("inbox.read")),
    session: AsyncSession = Depends(_session),
) -> DeliveryStatus:
    institution = _institution(principal, entry=True)
    notification_id = _notification_id(notification_id)
    entry = (await session.execute(sa.select(inbox_entries).where(
        inbox_entries.c.notification_id == notification_id,
        inbox_entries.c.institution == institution))).mappings().first()
    if entry is None:
        raise _not_found()
    sent = await people.of_notification(session, notification_id)
    hooks = await deliveries.of_notification(session, notification_id)
    return DeliveryStatus(
        notification_id=notification_id, read_at=entry["read_at"],
        acknowledged_at=entry["acknowledged_at"], acknowledged_by=entry["acknowledged_by"],
        people=[PersonDelivery.model_validate(row, from_attributes=True) for row in sent],
        webhooks=[WebhookDelivery.model_validate(row, from_attributes=True) for row in hooks])


class Preferences(BaseModel):
    person: str
    channels: list[Channel]
    digest: bool
    allowed_channels: list[Channel]
    own: bool  # False: the institution's default for the person


def _config(request: Request) -> Recipients:
    return request.app.state.runtime.extras[CONFIG].recipients



def _preferences(recipients: Recipients, person_id: str, own: Preference | None) -> Preferences:
    person = recipients.people[person_id]
    chosen = own or Preference(channels=person.channels, digest=person.digest)
    return Preferences(person=person_id, channels=chosen.channels, digest=chosen.digest,
                       allowed_channels=list(recipients.institutions[person.institution].channels),
                       own=own is not None)


@router.get("/preferences", response_model=Preferences,
            summary="Preferințele mele de notificare / my notification preferences")
async def my_preferences(
    request: Request,
    principal: Principal = Depends(permit("preferences.own")),
    session: AsyncSession = Depends(_session),
) -> Preferences:
    recipients = _config(request)
    if principal.subject not in recipients.people:
        raise refusal(404, "NOT_A_RECIPIENT", "Contul nu primește mesaje în afara inboxului.",
                       "This account receives no messages outside the inbox.")
    own = (await preference_store.of(session, [principal.subject])).get(principal.subject)
    return _preferences(recipients, principal.subject, own)


@router.put("/preferences", response_model=Preferences,
            summary="Schimb preferințele / change my preferences (P0 alerts still use every channel)")
async def set_preferences(
    chosen: Preference,
    request: Request,
    principal: Principal = Depends(permit("preferences.own")),
    session: AsyncSession = Depends(_session),
) -> Preferences:
    recipients = _config(request)
    try:
        recipients.check_preference(principal.subject, chosen)
    except PreferenceRefused as refused:
        raise refusal(422, refused.code, refused.ro, refused.en) from None
    async with session.begin():
        await preference_store.save(session, principal.subject, chosen, datetime.now(timezone.utc))
    return _preferences(recipients, principal.subject, chosen)


def _log_owner(principal: Principal, institution: str | None, action: str) -> str:
    """Whose webhook log: the asker's own institution unless one is named; an institution's
    supervisors and system read their own, the operator any (access.yaml ``action``)."""
    if has_control_characters(institution):
        raise HTTPException(422, detail=reason("INVALID_CHARACTERS", "institution"))
    owner = institution or principal.institution
    if not owner:
        raise HTTPException(422, detail=reason("INSTITUTION_REQUIRED"))
    relations = {Relation.ANY} | ({Relation.OWN} if owner == principal.institution else set())
    check(action, principal, relations)
    return owner


@router.get("/webhooks/deliveries", response_model=list[WebhookDelivery],
            summary="Jurnalul webhook-urilor / the webhook delivery log, newest first")
async def webhook_log(
    institution: str | None = None,
    status: Literal["pending", "delivered", "failed"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(permit("webhooks.log")),
    session: AsyncSession = Depends(_session),
) -> list[WebhookDelivery]:
    owner = _log_owner(principal, institution, "webhooks.log")
    rows = await deliveries.list_for(session, owner, limit, status)
    return [WebhookDelivery.model_validate(row, from_attributes=True) for row in rows]


class Replay(BaseModel):
    ids: list[Annotated[int, Field(ge=1, le=MAX_INT64)]] | None = Field(None, max_length=MAX_REPLAY_IDS)
    status: Literal["pending", "delivered", "failed"] | None = None
    institution: str | None = None


class Replayed(BaseModel):
    replayed: int


@router.post("/webhooks/deliveries/replay", response_model=Replayed,
             summary="Retrimite / replay webhook deliveries (same body, same Punte-Delivery-Id)")
async def replay_webhooks(
    body: Replay,
    principal: Principal = Depends(permit("webhooks.replay")),
    session: AsyncSession = Depends(_session),
) -> Replayed:
    owner = _log_owner(principal, body.institution, "webhooks.replay")
    async with session.begin():
        # Always within one institution: ids of another institution's deliveries match nothing.
        count = await deliveries.replay(session, now=datetime.now(timezone.utc), ids=body.ids,
                                        institution=owner, status=body.status)
    return Replayed(replayed=count)


# --- the webhook secret (Standard Webhooks "v1"; decision 0040) -------------------------------


class WebhookSigning(BaseModel):
    institution: str
    webhook: bool = Field(description="Whether the recipients file gives the institution a webhook")
    secret_created_at: datetime | None = Field(description="When its secret was made; null: it has none")
    signatures: list[Literal["v1", "v1a"]] = Field(
        description="What its webhook-signature carries: v1a only until it has a secret")


class WebhookSecret(WebhookSigning):
    secret: str = Field(description="whsec_…: shown this once; the network keeps it only sealed")


def _secret_owner(principal: Principal, institution: str | None, action: str) -> str:
    owner = _log_owner(principal, institution, action)
    if owner not in institutions():
        raise HTTPException(422, detail=reason("UNKNOWN_INSTITUTION"))
    return owner


def _signing(request: Request, institution: str, made: datetime | None) -> dict:
    inst = _config(request).of(institution)
    return {"institution": institution, "webhook": bool(inst and inst.webhook), "secret_created_at": made,
            "signatures": ["v1", "v1a"] if made else ["v1a"]}


@router.get("/webhooks/secret", response_model=WebhookSigning,
            summary="Cum sunt semnate webhook-urile / how an institution's webhooks are signed (never the secret)")
async def webhook_signing(
    request: Request,
    institution: str | None = None,
    principal: Principal = Depends(permit("webhooks.log")),
    session: AsyncSession = Depends(_session),
) -> WebhookSigning:
    owner = _secret_owner(principal, institution, "webhooks.log")
    return WebhookSigning(**_signing(request, owner, await webhook_secrets.created_at(session, owner)))


class SecretFor(BaseModel):
    institution: str | None = None


@router.post("/webhooks/secret", response_model=WebhookSecret, status_code=201,
             summary="Secret nou (rotire) / a new webhook secret, replacing the old one at once; shown once")
async def rotate_webhook_secret(
    body: SecretFor,
    request: Request,
    principal: Principal = Depends(permit("webhooks.secret")),
    session: AsyncSession = Depends(_session),
) -> WebhookSecret:
    owner = _secret_owner(principal, body.institution, "webhooks.secret")
    now = datetime.now(timezone.utc)
    async with session.begin():
        secret = await webhook_secrets.issue(session, request.app.state.runtime.data_keys, owner, now)
    return WebhookSecret(secret=secret, **_signing(request, owner, now))
