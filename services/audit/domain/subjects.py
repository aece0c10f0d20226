"""What an entry is about, read from the record so auditors can search by it. Any record
is accepted: a body that is not JSON, or has no CloudEvents headers, yields nulls."""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from runtime.cloudevents import header_map
from services.audit.domain.entries import Record

PLACEHOLDER = "{institution}"


@dataclass(frozen=True)
class Subject:
    event_id: str | None
    event_type: str | None
    source: str | None
    case_id: str | None
    institution: str | None
    child_ref: str | None = None
    actor: str | None = None


def institution_of(topic: str, templates: Iterable[str]) -> str | None:
    """The {institution} part of a per-institution topic (punte.ingress.x, punte.delivery.x).
    Kept even when the id is unknown: the trail records what was sent, not what is valid."""
    for template in templates:
        prefix, _, suffix = template.partition(PLACEHOLDER)
        if topic.startswith(prefix) and topic.endswith(suffix) and len(topic) > len(prefix) + len(suffix):
            return topic[len(prefix): len(topic) - len(suffix)]
    return None


def _body(value: bytes | None) -> dict:
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
    headers = header_map(record.headers)
    body = _body(record.value)
    return Subject(
        event_id=headers.get("ce_id") or None, event_type=headers.get("ce_type") or None,
        source=headers.get("ce_source") or None,
        case_id=_text(body, "case_id") or headers.get("ce_subject") or None,
        institution=institution_of(record.topic, templates) or _text(body, "actor_institution"),
        child_ref=_text(body, "child_ref"),
        # A person where the event names one (access, referral steps), else the sender.
        actor=_text(body, "actor", "actor_person") or headers.get("ce_source") or None,
    )
