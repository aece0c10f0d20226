"""What an entry is about, read from the record so auditors can search by it. Any record
is accepted: a body that is not JSON, or has no CloudEvents headers, yields nulls, and text
PostgreSQL could not store or index is made storable (the entry keeps the exact bytes)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from contracts.reference import SENDER_HEADER, gateway_topic
from runtime.cloudevents import header_map
from services.audit.domain.entries import Record

PLACEHOLDER = "{institution}"
# Searchable columns are indexed; a B-tree entry holds at most 2704 bytes (500 characters
# are at most 2000 bytes of UTF-8).
MAX_SEARCHABLE = 500


@dataclass(frozen=True)
class Subject:
    event_id: str | None
    event_type: str | None
    source: str | None
    case_id: str | None
    institution: str | None
    child_ref: str | None = None
    actor: str | None = None
    purpose: str | None = None  # an access event's purpose code


def institution_of(topic: str, templates: Iterable[str]) -> str | None:
    """The {institution} part of a per-institution topic (punte.ingress.x, punte.delivery.x).
    Kept even when the id is unknown: the trail records what was sent, not what is valid."""
    for template in templates:
        prefix, _, suffix = template.partition(PLACEHOLDER)
        if topic.startswith(prefix) and topic.endswith(suffix) and len(topic) > len(prefix) + len(suffix):
            return topic[len(prefix): len(topic) - len(suffix)]
    return None


def _gateway_sender(topic: str, headers: Mapping[str, str]) -> str | None:
    """On the HTTP gateway's topic, the institution intake authenticated (decision 0032)."""
    return headers.get(SENDER_HEADER) if topic == gateway_topic() else None


def searchable(text: str | None) -> str | None:
    """Text a PostgreSQL column takes and its index holds: no NUL, no lone surrogate (JSON
    may escape either), at most MAX_SEARCHABLE characters. Otherwise one odd message could
    not be appended, and the trail would have a gap."""
    if not text:
        return None
    if text.isascii() and "\x00" not in text:  # most ids: no surrogate can be there
        return text[:MAX_SEARCHABLE]
    clean = text.replace("\x00", "\ufffd").encode("utf-8", errors="replace").decode("utf-8")
    return clean[:MAX_SEARCHABLE]


ACCESS_TYPE = "ro.punte.access.v1"


def body_of(value: bytes | None) -> dict:
    """The record's value as a JSON object ({} when it is not one)."""
    try:
        body = json.loads((value or b"").decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _text(body: dict, *keys: str) -> str | None:
    for key in keys:
        found = body.get(key)
        if isinstance(found, str) and found:
            return found
    return None


def subject_of(record: Record, templates: Iterable[str]) -> Subject:
    return subject_with(record, templates, body_of(record.value), header_map(record.headers))


def subject_with(record: Record, templates: Iterable[str], body: dict, headers: Mapping[str, str]) -> Subject:
    """``subject_of`` with the body and the headers (as text) already read."""
    event_type = headers.get("ce_type")
    return Subject(
        event_id=searchable(headers.get("ce_id")), event_type=searchable(headers.get("ce_type")),
        source=searchable(headers.get("ce_source")),
        case_id=searchable(_text(body, "case_id") or headers.get("ce_subject")),
        institution=searchable(institution_of(record.topic, templates) or _gateway_sender(record.topic, headers)
                               or _text(body, "actor_institution")),
        child_ref=searchable(_text(body, "child_ref")),
        # A person where the event names one (access, referral steps), else the sender.
        actor=searchable(_text(body, "actor", "actor_person") or headers.get("ce_source")),
        purpose=searchable(_text(body, "purpose")) if event_type == ACCESS_TYPE else None,
    )
