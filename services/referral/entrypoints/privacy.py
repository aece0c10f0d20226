"""Referral's part of the person's export (GDPR art. 15; docs/privacy/rights.md): the
case's referrals with their whole history (who did what, when, why, with the notes), and
the case as referral knows it. For the data-protection officer of the case's lead only,
with the right's purpose, recorded as an access event; allowed while the case is restricted."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from contracts.refusals import Refused
from runtime.access import record_access
from runtime.authorization import check, permit
from runtime.rights import rights_purpose
from runtime.service import Runtime
from runtime.tokens import Principal
from services.referral import handlers
from services.referral.adapters import notes as case_notes
from services.referral.adapters import privacy, repository
from services.referral.domain import visibility
from services.referral.entrypoints.http import _refused

router = APIRouter(prefix="/privacy", tags=["privacy"])


@router.get("/cases/{case_id}/export", summary="Exportul datelor persoanei / the person's data (art. 15)")
async def export(case_id: str, request: Request,
                 principal: Principal = Depends(permit("subject.export"))) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    async with runtime.unit_of_work() as uow:
        case = await repository.case_of(uow.session, case_id)
        if case is None:
            raise _refused(Refused("UNKNOWN_CASE", "no such case"))
        check("subject.export", principal, visibility.to_case(principal.institution, repository.sides_of(case)),
              "case")
        rights_purpose(request, "subject.export")  # after the rule: outsiders learn nothing
        record_access(uow, principal, request, service="referral", case_id=case_id, query={"export": "subject"})
        held = await privacy.referrals_of(uow.session, case_id)
        steps = await privacy.history_of(uow.session, [r.referral_id for r in held])
        # Notes are sealed in the case file: opened here, for the person's own export only.
        kept = [n for r in held for n in await case_notes.of_referral(uow.session, r.referral_id)]
        texts = await case_notes.opened(uow.session, handlers.Config.of(runtime).data_keys, case_id, kept)
        restriction = await privacy.restriction_of(uow.session, case_id)
    return {
        "service": "referral", "case_id": case_id,
        "case": {"lead": case.lead, "lead_manager": case.lead_manager, "urgency": case.urgency,
                 "categories": case.categories, "county": case.county, "status": case.status,
                 "participants": case.participants, "reporters": case.reporters,
                 "do_not_contact": case.do_not_contact, "opened_at": case.opened_at.isoformat(),
                 "closed_at": case.closed_at.isoformat() if case.closed_at else None},
        "restriction": privacy.restriction_state(restriction),
        "referrals": [{
            "referral_id": r.referral_id, "referrer": r.referrer, "to": r.to_institution, "kind": r.kind,
            "urgency": r.urgency, "categories": r.categories, "state": r.state, "owner": r.owner,
            "service_id": r.service_id, "forwarded_from": r.forwarded_from, "legal_basis": r.legal_basis,
            "consent": r.consent, "deadlines": r.deadlines, "requested_at": r.requested_at.isoformat(),
            "accepted_at": r.accepted_at.isoformat() if r.accepted_at else None, "outcome": r.outcome,
            "history": [{"at": s.at.isoformat(), "command": s.command, "from": s.from_state, "to": s.to_state,
                         "by": s.actor_institution, "person": s.actor_person, "owner": s.owner,
                         "reason": s.reason, "outcome": s.outcome, "note_id": s.note_id}
                        for s in steps if s.referral_id == r.referral_id],
            "notes": [{"note_id": n.note_id, "at": n.at.isoformat(), "command": n.command,
                       "by": n.author_institution, "person": n.author_person, "text": texts.get(n.note_id)}
                      for n in kept if n.referral_id == r.referral_id],
        } for r in held],
    }
