"""Notification's part of the person's export (GDPR art. 15; docs/privacy/rights.md): the
inbox entries about the case (what each institution was told), and the e-mails, SMS and
webhook deliveries sent about them. For the data-protection officer of the case's lead
only, with the right's purpose, recorded as an access event."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from contracts.access import case_relations
from runtime import restrictions
from runtime.access import record_access
from runtime.authorization import check, permit
from runtime.rights import rights_purpose
from runtime.service import Runtime
from runtime.tokens import Principal
from services.notification.adapters import privacy

router = APIRouter(prefix="/privacy", tags=["privacy"])


def _at(value) -> str | None:
    return value.isoformat() if value is not None else None


@router.get("/cases/{case_id}/export", summary="Exportul datelor persoanei / the person's data (art. 15)")
async def export(case_id: str, request: Request,
                 principal: Principal = Depends(permit("subject.export"))) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    async with runtime.unit_of_work() as uow:
        lead, participants = await privacy.sides_of(uow.session, case_id)
        check("subject.export", principal,
              case_relations(principal.institution, lead=lead, participants=participants), "case")
        rights_purpose(request, "subject.export")  # after the rule: outsiders learn nothing
        record_access(uow, principal, request, service="notification", case_id=case_id,
                      query={"export": "subject"})
        entries = await privacy.entries_of(uow.session, case_id)
        ids = [e.notification_id for e in entries]
        messages = await privacy.messages_of(uow.session, ids)
        webhooks = await privacy.webhooks_of(uow.session, ids)
        restricted = await restrictions.is_restricted(uow.session, case_id)
    return {
        "service": "notification", "case_id": case_id, "restricted": restricted,
        "notices": [{
            "notification_id": e.notification_id, "institution": e.institution, "kind": e.kind,
            "referral_id": e.referral_id, "urgency": e.urgency, "categories": e.categories,
            "summary_ro": e.summary_ro, "summary_en": e.summary_en, "created_at": _at(e.created_at),
            "read_at": _at(e.read_at), "acknowledged_at": _at(e.acknowledged_at),
        } for e in entries],
        "messages": [{"notification_id": m.notification_id, "institution": m.institution,
                      "channel": m.channel, "purpose": m.purpose, "status": m.status,
                      "created_at": _at(m.created_at), "sent_at": _at(m.sent_at)} for m in messages],
        "webhooks": [{"notification_id": w.notification_id, "institution": w.institution, "status": w.status,
                      "created_at": _at(w.created_at), "delivered_at": _at(w.delivered_at)}
                     for w in webhooks],
    }
