"""What every message from an institution passes before a service acts on it: a readable
CloudEvent, sent by the owner of the ingress topic, signed with one of its current keys,
of a known type whose schema it satisfies. And the answer every inbound message gets."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.reference import (
    SENDER_HEADER,
    delivery_topic,
    gateway_topic,
    institutions,
    may_send,
    owner_of_ingress_topic,
)
from contracts.refusals import Refused, reason
from runtime.cloudevents import CloudEvent, derived_id, parse_time
from runtime.inbox import Message, UnitOfWork, dead_letter, event_key, key_by_position
from runtime.schemas import schema
from runtime.signing import Keyring

OUTCOME_TYPE = "ro.punte.outcome.v1"


class Rejected(Refused):
    """An inbound message that cannot be read or trusted."""


def validate_data(event_type: str, data: dict[str, Any]) -> None:
    checker = schema(event_type)
    if checker is None:
        raise Rejected("UNKNOWN_EVENT_TYPE", f"no schema for {event_type!r}")
    problem = checker.problem(data)
    if problem is not None:
        raise Rejected("SCHEMA_VIOLATION", problem)


def sender_of(message: Message) -> str | None:
    """The institution that sent ``message``: the owner of the ingress topic (the only one
    allowed to write there), or on the gateway topic (which only intake writes) the one
    intake's HTTP gateway authenticated; None when neither names a known institution."""
    if message.topic == gateway_topic():
        sender = message.header(SENDER_HEADER)
        return sender if sender in institutions() else None
    return owner_of_ingress_topic(message.topic)


def sender_key(institution: str, event_id: str) -> str:
    """The inbox key of an institution's event: the institution that sent it and the id.
    The same text as ``event_key`` of a genuine event, so keys kept before stay valid."""
    return event_key(f"/institutions/{institution}", event_id)


def key_by_sender(message: Message) -> str:
    """The inbox key of an ingress message, from what holds before any header is trusted:
    the owner of the topic (only it may write there) and the event id; the position when
    either is missing. A claimed ce_source plays no part, so a message that fails
    authentication can only take an id of its own topic's owner, never another's."""
    owner, event_id = sender_of(message), message.header("ce_id")
    return sender_key(owner, event_id) if owner and event_id else key_by_position(message)


@dataclass(frozen=True)
class Window:
    """What an inbound message must fit in: how old, or how far ahead of our clock, its
    ce_time may be, and how large its value."""

    max_age: timedelta = timedelta(days=7)
    max_skew: timedelta = timedelta(minutes=5)
    max_bytes: int = 256 * 1024  # PUNTE_INGRESS_MAX_MESSAGE_BYTES

    def check_size(self, value: bytes | None) -> None:
        size = len(value or b"")
        if size > self.max_bytes:
            raise Rejected("TOO_LARGE", f"the message value is {size} bytes, over the maximum of {self.max_bytes}")

    def check(self, ce_time: str, now: datetime) -> None:
        try:
            sent = parse_time(ce_time)
        except ValueError:
            raise Rejected("MALFORMED_ENVELOPE", "ce_time is not RFC 3339") from None
        if sent < now - self.max_age:
            raise Rejected("STALE_EVENT", f"ce_time {ce_time} is older than {self.max_age}")
        if sent > now + self.max_skew:
            raise Rejected("FUTURE_EVENT", f"ce_time {ce_time} is ahead of {now.isoformat()}")


def source_refusal(source: str, sender: str) -> Rejected | None:
    """Why ``source`` is not the ce_source of ``sender`` (an institution known to send), if
    it is not (``named_refusal``; a source that names no institution at all is another's)."""
    named = source.removeprefix("/institutions/")
    return named_refusal("ce_source", named if named != source else None, sender)


def named_refusal(field: str, named: str | None, sender: str | None) -> Rejected | None:
    """Why the institution ``field`` names (``named``) is not the sender, if it is not:
    UNKNOWN_INSTITUTION when the network does not know it, SOURCE_MISMATCH when it is
    another one (or ``named`` is None: no institution at all). A report's
    ``reporter.institution`` and an event's ``ce_source`` are held to this one rule."""
    if named is not None and named == sender:
        return None
    if named is not None and named not in institutions():
        return Rejected("UNKNOWN_INSTITUTION", f"{field} names no institution of the network")
    return Rejected("SOURCE_MISMATCH", f"{field} is not the sender")


def authenticate(message: Message, keyring: Keyring, window: Window = Window(),
                 now: datetime | None = None) -> CloudEvent:
    """The verified event, or a Refused with a code from the catalogue, in the order of
    docs/contracts.md ("The receiver's checks")."""
    owner = sender_of(message)
    if owner is None:
        raise Rejected("UNKNOWN_INSTITUTION", f"{message.topic}: no known institution sent this")
    window.check_size(message.value)  # before the body is parsed or hashed
    event = message.event
    refused = source_refusal(event.source, owner)
    if refused is not None:
        raise refused
    now = now or datetime.now(timezone.utc)
    keyring.verify_event(owner, event, message.value or b"", now=now)
    window.check(event.time, now)
    if schema(event.type) is not None and not may_send(owner, event.type):
        raise Rejected("SENDER_NOT_ALLOWED", f"{owner} may not send {event.type}")
    validate_data(event.type, event.data)
    return event


@dataclass(frozen=True)
class Refusal:
    """What ``receive`` did with a message it could not read or trust."""

    code: str
    detail: str
    answer: dict[str, Any]  # the outcome already sent to the sender


def receive(uow: UnitOfWork, message: Message, keyring: Keyring, service: str,
            window: Window = Window()) -> CloudEvent | Refusal:
    """Authenticate an inbound message. One that cannot be read or trusted is answered
    with a rejection and dead-lettered with its reason."""
    try:
        return authenticate(message, keyring, window, now=uow.now)
    except Refused as exc:
        return refuse(uow, message, service, exc)


def refuse(uow: UnitOfWork, message: Message, service: str, refused: Refused) -> Refusal:
    """Answer a message ``authenticate`` refused with a rejection, and dead-letter it."""
    answer = reply(uow, message, accepted=False, code=refused.code, detail=refused.detail)
    dead_letter(uow, message, service, refused.code, refused.detail)
    return Refusal(refused.code, refused.detail, answer)


def reply(uow: UnitOfWork, message: Message, *, accepted: bool, code: str | None = None,
          detail: str | None = None, key: str | None = None, **fields: Any) -> dict[str, Any]:
    """Send the outcome of an inbound message to the delivery topic of its sender, and
    return it (services keep it to answer the HTTP gateway)."""
    sender = sender_of(message)
    subject_id = message.header("ce_id") or f"@{message.position}"
    data: dict[str, Any] = {
        "subject_id": subject_id, "subject_type": message.header("ce_type"),
        "status": "accepted" if accepted else "rejected",
        **{k: v for k, v in fields.items() if v is not None},
    }
    if code is not None:
        data["reason"] = reason(code, detail)
    if sender is not None:
        # One outcome per message, its id derived from the message: an answer sent again
        # (the message processed again after a restore) is one the sender can drop. A
        # replayed dead letter's answer is a new one: it supersedes PROCESSING_FAILED.
        step = ("outcome", "replayed") if uow.replaying else ("outcome",)
        outcome = CloudEvent.new(OUTCOME_TYPE, uow.source, data, id=derived_id(key_by_sender(message), *step))
        uow.outbox.emit(delivery_topic(sender), outcome, key=key or subject_id, cause=message.position)
    return data


class AlreadyAnswered(Exception):
    """A message answered otherwise than PROCESSING_FAILED is not answered twice."""


async def keep_answer(session: AsyncSession, table: sa.Table, values: dict[str, Any],
                      replaying: bool = False) -> None:
    """Keep the one answer to an inbound message (``table`` is keyed by ``message_key`` and
    has its ``reason_code``). A replayed dead letter's answer (``replaying``: the unit of
    work's) replaces the PROCESSING_FAILED it was given (decision 0022); any other stands."""
    if not replaying:
        await session.execute(sa.insert(table).values(**values))
        return
    statement = pg_insert(table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.message_key],
        set_={name: statement.excluded[name] for name in values if name != "message_key"},
        where=table.c.reason_code == "PROCESSING_FAILED")
    if not (await session.execute(statement)).rowcount:
        raise AlreadyAnswered(f"{values['message_key']} was answered, and not PROCESSING_FAILED")
