"""What the network sends an institution on its delivery topic (``punte.delivery.<id>``):
outcomes (one per message sent) and case notifications, each signed with the network's key.
Verify before you act on one: ``read_delivery`` refuses, with the network's own codes, a
record whose signature is missing, whose key the network does not list, or that does not
verify."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from punte_sdk.errors import EnvelopeRefused, Rejected
from punte_sdk.events import CASE_NOTIFICATION, CONTENT_TYPE, OUTCOME, SPECVERSION, Event
from punte_sdk.signing import VerificationKeys

REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time")
# RFC 3339 section 5.6 date-time, as the network's header schema has ce_time.
RFC_3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})")


@dataclass(frozen=True)
class Reason:
    """Why a message was rejected: a catalogue code and its Romanian and English messages."""

    code: str
    message_ro: str
    message_en: str


@dataclass(frozen=True)
class Outcome:
    """The network's answer to one message (``ro.punte.outcome.v1``); ``subject_id`` is the
    ``ce_id`` it answers."""

    subject_id: str
    status: str  # "accepted" or "rejected"
    subject_type: str | None = None
    reason: Reason | None = None
    case_id: str | None = None
    referral_id: str | None = None
    urgency: str | None = None
    informed: list[str] = field(default_factory=list)
    merged: bool = False
    possible_duplicate_of: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @staticmethod
    def from_data(data: dict[str, Any]) -> "Outcome":
        reason = data.get("reason")
        return Outcome(
            subject_id=str(data["subject_id"]), status=str(data["status"]), subject_type=data.get("subject_type"),
            reason=Reason(str(reason["code"]), str(reason.get("message_ro", "")), str(reason.get("message_en", "")))
            if reason else None,
            case_id=data.get("case_id"), referral_id=data.get("referral_id"), urgency=data.get("urgency"),
            informed=list(data.get("informed") or []), merged=bool(data.get("merged", False)),
            possible_duplicate_of=list(data.get("possible_duplicate_of") or []), data=data)

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def raise_if_rejected(self) -> "Outcome":
        """This outcome if accepted; else Rejected with its code and messages."""
        if self.status != "accepted":
            reason = self.reason or Reason("UNKNOWN", "fără motiv", "no reason given")
            raise Rejected(reason.code, reason.message_en, reason.message_ro, outcome=self)
        return self


@dataclass(frozen=True)
class Delivery:
    """A verified delivery: the event's attributes, its data, and the network key that signed it."""

    id: str
    source: str
    type: str
    time: str
    subject: str | None
    data: dict[str, Any]
    key_id: str
    event: Event = field(repr=False)

    @property
    def is_outcome(self) -> bool:
        return self.type == OUTCOME

    @property
    def is_notification(self) -> bool:
        return self.type == CASE_NOTIFICATION

    def outcome(self) -> Outcome:
        if not self.is_outcome:
            raise ValueError(f"{self.type} is not an outcome")
        return Outcome.from_data(self.data)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeRefused("MALFORMED_ENVELOPE", "a header is not UTF-8") from None


def event_of(headers: Iterable[tuple[str, bytes | str | None]] | None, value: bytes | str | None) -> Event:
    """The event a Kafka record (binary mode) carries, not yet verified. A header given
    twice, a missing required one, another spec version or a content type other than JSON
    is MALFORMED_ENVELOPE, as the network answers it."""
    seen: dict[str, str] = {}
    for name, raw in headers or ():
        if name in seen and (name.startswith("ce_") or name == "content-type"):
            raise EnvelopeRefused("MALFORMED_ENVELOPE", f"header {name} given twice")
        seen[name] = _text(raw)
    missing = [k for k in REQUIRED if not seen.get(k)]
    if missing:
        raise EnvelopeRefused("MALFORMED_ENVELOPE", f"missing headers: {', '.join(missing)}")
    if seen["ce_specversion"] != SPECVERSION:
        raise EnvelopeRefused("MALFORMED_ENVELOPE", "unsupported ce_specversion (1.0 is)")
    content_type = seen.get("content-type", "").split(";")[0].strip().lower()
    if content_type != CONTENT_TYPE:
        raise EnvelopeRefused("MALFORMED_ENVELOPE", "content-type is not application/json")
    body = value.encode("utf-8") if isinstance(value, str) else (value or b"")
    return Event(id=seen["ce_id"], source=seen["ce_source"], type=seen["ce_type"], time=seen["ce_time"],
                 body=body, subject=seen.get("ce_subject") or None, keyid=seen.get("ce_keyid") or None,
                 signature=seen.get("ce_signature") or None, sigversion=seen.get("ce_sigversion"))


def read_delivery(network_keys: VerificationKeys, headers: Iterable[tuple[str, bytes | str | None]] | None,
                  value: bytes | str | None) -> Delivery:
    """A delivery record verified with the network's keys and decoded. Raises
    SignatureRefused (MISSING_SIGNATURE, UNKNOWN_KEY, BAD_SIGNATURE) or EnvelopeRefused
    (MALFORMED_ENVELOPE, MALFORMED_PAYLOAD); the body is read only once it verified."""
    event = event_of(headers, value)
    key_id = network_keys.verify_event(event)
    try:
        if not RFC_3339.fullmatch(event.time):
            raise ValueError(event.time)
        datetime.fromisoformat(event.time.upper().replace("Z", "+00:00"))  # the ranges too
    except ValueError:
        raise EnvelopeRefused("MALFORMED_ENVELOPE", "ce_time is not RFC 3339") from None
    try:
        data = json.loads(event.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EnvelopeRefused("MALFORMED_PAYLOAD", "the body is not UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise EnvelopeRefused("MALFORMED_PAYLOAD", "the body is not a JSON object")
    return Delivery(id=event.id, source=event.source, type=event.type, time=event.time, subject=event.subject,
                    data=data, key_id=key_id, event=event)
