"""Access events: every read of personal data says who read what, for which institution
and why (Law 190/2018 art. 4; GDPR art. 30). Services emit one per read, through the
outbox, and the audit trail records it like any other message."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import unquote

from fastapi import Request

from contracts.events import AccessRecorded, EventType
from runtime.cloudevents import CloudEvent
from runtime.inbox import UnitOfWork
from runtime.tokens import Principal

ACCESS_TOPIC = "punte.access"
PURPOSE_HEADER = "x-punte-purpose"
DEFAULT_PURPOSE = "lucru la caz / case work"


def purpose_of(request: Request) -> str:
    """Why the reader reads: the X-Punte-Purpose header, percent-encoded UTF-8 since HTTP
    headers are ASCII (or ?purpose=), else case work."""
    given = unquote(request.headers.get(PURPOSE_HEADER, "")) or request.query_params.get("purpose") or ""
    return given.strip()[:200] or DEFAULT_PURPOSE


def record_access(uow: UnitOfWork, principal: Principal, request: Request, *, service: str,
                  case_id: str | None = None, query: dict[str, str] | None = None) -> None:
    access = AccessRecorded(
        actor=principal.subject, actor_institution=principal.institution,
        roles=sorted(principal.roles), purpose=purpose_of(request), service=service,
        resource=request.url.path, case_id=case_id, query=query or {},
        at=datetime.now(timezone.utc),
    )
    uow.outbox.emit(ACCESS_TOPIC, CloudEvent.new(
        EventType.ACCESS.value, uow.source, access.model_dump(mode="json"), subject=case_id,
    ), key=case_id or principal.subject)
