"""Audit's part of the person's export (GDPR art. 15; docs/privacy/rights.md): the trail's
entries about the case as auditors see them (who, what type, when, the leaf hash), never
the recorded bytes (no break-glass). For the data-protection officer of the case's lead
only, with the right's purpose, recorded as an access event like every audit query."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from contracts.access import case_relations
from contracts.events import CaseOpened, EventType, ReferralRequested
from runtime.access import record_access
from runtime.authorization import check, permit
from runtime.inbox import Message, UnitOfWork
from runtime.rights import rights_purpose
from runtime.service import Runtime
from runtime.tokens import Principal
from services.audit.adapters import privacy

router = APIRouter(prefix="/privacy", tags=["privacy"])


async def follow_case(uow: UnitOfWork, message: Message) -> None:
    """Remember each case's lead and participants (punte.cases and punte.referrals,
    consumer group punte-audit-cases)."""
    await follow_cases(uow, [message])


async def follow_cases(uow: UnitOfWork, messages: list[Message]) -> None:
    """``follow_case`` for a consumed batch: the cases opened first, then who each referral
    adds, two or three statements in all (decision 0033). A referral read before its case
    (another topic, another partition) now finds it, where one by one it did not."""
    opened: list[tuple[str, str, list[str]]] = []
    referred: list[tuple[str, str]] = []
    for message in messages:
        event = message.event
        if event.type == EventType.CASE_OPENED.value:
            case = CaseOpened.model_validate(event.data)
            opened.append((case.case_id, case.lead, case.informed))
        elif event.type == EventType.REFERRAL_REQUESTED.value:
            referral = ReferralRequested.model_validate(event.data)
            referred.append((referral.case_id, referral.to))
    await privacy.cases_opened(uow.session, opened)
    await privacy.referred_to(uow.session, referred)


@router.get("/cases/{case_id}/export", summary="Exportul datelor persoanei / the person's data (art. 15)")
async def export(case_id: str, request: Request,
                 principal: Principal = Depends(permit("subject.export"))) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    async with runtime.unit_of_work() as uow:
        lead, participants = await privacy.sides_of(uow.session, case_id)
        check("subject.export", principal,
              case_relations(principal.institution, lead=lead, participants=participants), "case")
        rights_purpose(request, "subject.export")  # after the rule: outsiders learn nothing
        record_access(uow, principal, request, service="audit", case_id=case_id, query={"export": "subject"})
        rows = await privacy.entries_of(uow.session, case_id)
    return {
        "service": "audit", "case_id": case_id,
        "entries": [{"seq": r.seq, "recorded_at": r.recorded_at.isoformat(), "topic": r.topic,
                     "event_id": r.event_id, "event_type": r.event_type, "source": r.source,
                     "institution": r.institution, "actor": r.actor, "leaf_hash": r.leaf_hash.hex()}
                    for r in rows],
    }
