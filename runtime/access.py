"""Access events: every read of personal data says who read what, for which institution
and why (Law 190/2018 art. 4; GDPR art. 30). Services emit one per read, through the
outbox, and the audit trail records it like any other message.

"Why" is a code of contracts/reference/access-purposes.yaml, optionally with free text:
``X-Punte-Purpose: <code>`` or ``<code>; <free text>`` (the text percent-encoded UTF-8,
since HTTP headers are ASCII), or the same in ``?purpose=``. The access event keeps both;
what other institutions are told (case-accessed notices) carries only the code's labels,
because free text may name people. A code outside the list is refused (UNKNOWN_PURPOSE)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import unquote

from fastapi import HTTPException, Request

from contracts.events import AccessRecorded, EventType
from contracts.reference import REFERENCE_DIR, _read_yaml
from contracts.refusals import reason
from runtime.cloudevents import CloudEvent
from runtime.control_characters import without_control_characters
from runtime.inbox import UnitOfWork
from runtime.tokens import Principal

ACCESS_TOPIC = "punte.access"
PURPOSE_HEADER = "x-punte-purpose"
PURPOSE_TEXT_MAX = 200


@dataclass(frozen=True)
class Purpose:
    code: str
    label_ro: str
    label_en: str


# How a notice names a purpose that is not a code of the list (an access event from before
# the list, whose purpose was free text): never the text itself.
UNLISTED = Purpose("", "scop nedeclarat", "purpose not stated")


@dataclass(frozen=True)
class Stated:
    """A reader's purpose: a code of the list and, if given, free text for the trail."""

    code: str
    text: str | None = None


class UnknownPurpose(ValueError):
    """The purpose given is not a code of access-purposes.yaml."""


@functools.cache
def _reference() -> tuple[dict[str, Purpose], str]:
    data = _read_yaml(REFERENCE_DIR / "access-purposes.yaml")
    listed = {p["code"]: Purpose(p["code"], p["label_ro"], p["label_en"]) for p in data["purposes"]}
    if data["default"] not in listed:
        raise ValueError("access-purposes.yaml: the default is not a listed code")
    return listed, data["default"]


def purposes() -> dict[str, Purpose]:
    """The purpose codes, in the order of access-purposes.yaml."""
    return _reference()[0]


def purpose_named(code: str | None) -> Purpose:
    """A code's labels; UNLISTED for anything else."""
    return purposes().get(code or "", UNLISTED)


def parse_purpose(given: str) -> Stated:
    """``"<code>"`` or ``"<code>; <free text>"`` (percent-encoded); nothing given is the
    default (case work). The free text loses control characters and is cut to 200."""
    code, _, text = given.partition(";")
    code = code.strip() or _reference()[1]  # codes are plain ASCII: never percent-decoded
    if code not in purposes():
        raise UnknownPurpose("not a code of access-purposes.yaml")
    clean = without_control_characters(unquote(text))[:PURPOSE_TEXT_MAX]
    return Stated(code, clean or None)


def purpose_of(request: Request) -> Stated:
    """Why the reader reads (the header, else ?purpose=); HTTP 422 UNKNOWN_PURPOSE for a code
    outside the list. The refusal never repeats what was sent."""
    given = request.headers.get(PURPOSE_HEADER) or request.query_params.get("purpose") or ""
    try:
        return parse_purpose(given)
    except UnknownPurpose:
        raise HTTPException(422, detail=reason("UNKNOWN_PURPOSE", "see contracts/reference/access-purposes.yaml")) \
            from None


def stated_purpose(request: Request, needed: str) -> Stated:
    """A purpose the reader must state explicitly (break-glass, the person's rights): no
    default; HTTP 422 PURPOSE_REQUIRED (naming ``needed``) when none is given,
    UNKNOWN_PURPOSE for a code outside the list."""
    given = request.headers.get(PURPOSE_HEADER) or request.query_params.get("purpose") or ""
    if not given.partition(";")[0].strip():
        raise HTTPException(422, detail=reason("PURPOSE_REQUIRED", needed))
    return purpose_of(request)


def record_access(uow: UnitOfWork, principal: Principal, request: Request, *, service: str,
                  case_id: str | None = None, query: dict[str, str] | None = None,
                  break_glass: bool = False, resource: str | None = None) -> None:
    """``break_glass``: the read opened a sealed value (the audit's), so the case's lead is
    told whoever read it. ``resource``: what was read, when not the request's path (a path
    holding a term that must not be recorded)."""
    stated = purpose_of(request)
    access = AccessRecorded(
        actor=principal.subject, actor_institution=principal.institution,
        roles=sorted(principal.roles), purpose=stated.code, purpose_text=stated.text, service=service,
        resource=resource or request.url.path, case_id=case_id, query=query or {},
        at=datetime.now(timezone.utc), break_glass=break_glass,
    )
    uow.outbox.emit(ACCESS_TOPIC, CloudEvent.new(
        EventType.ACCESS.value, uow.source, access.model_dump(mode="json"), subject=case_id,
    ), key=case_id or principal.subject)
