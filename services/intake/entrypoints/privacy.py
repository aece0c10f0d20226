"""The person's rights over HTTP (GDPR art. 15, 16, 18; docs/privacy/rights.md): the
data-protection officer of the case's lead exports what intake holds about the child (the
only place the identity is opened), rectifies the identity (a new version, never an
overwrite), and restricts the case's processing or lifts the restriction. Every call needs
the right's purpose (runtime.rights) and is an access event like any read."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from pydantic import BaseModel

from contracts.access import case_relations
from contracts.events import CaseRestricted, EventType
from contracts.refusals import Refused, reason
from runtime import restrictions
from runtime.access import record_access
from runtime.authorization import check, permit
from runtime.cloudevents import CloudEvent
from runtime.inbox import UnitOfWork
from runtime.rights import rights_purpose
from runtime.service import Runtime
from runtime.tokens import Principal
from services.intake.adapters import privacy, repository
from services.intake.adapters.vault import IdentityVault, Sealed
from services.intake.domain import rights
from services.intake.domain.pseudonym import child_ref as pseudonym_of

router = APIRouter(prefix="/privacy", tags=["privacy"])
SERVICE = "intake"
CASES_TOPIC = "punte.cases"
VAULT = "intake_privacy_vault"  # Runtime.extras keys
PSEUDONYM_KEY = "intake_privacy_pseudonym_key"


def _keys(runtime: Runtime) -> tuple[IdentityVault, bytes]:
    """The vault and the pseudonym key, from the service's settings, built once."""
    if VAULT not in runtime.extras:
        from services.intake.bootstrap import build_vault, pseudonym_key  # bootstrap imports this module
        runtime.extras[VAULT] = build_vault(runtime.settings)
        runtime.extras[PSEUDONYM_KEY] = pseudonym_key(runtime.settings.pseudonym_key)
    return runtime.extras[VAULT], runtime.extras[PSEUDONYM_KEY]


async def _lead_case(uow: UnitOfWork, case_id: str, principal: Principal, action: str):
    """The case, if ``action`` is allowed on it: only the case's lead (404 to others)."""
    row = await privacy.case_of(uow.session, case_id)
    relations = (case_relations(principal.institution, lead=row.lead, participants=row.informed)
                 if row is not None else case_relations(None, lead=None))
    check(action, principal, relations, resource="case")
    assert row is not None  # check refuses a case that does not exist
    return row


# The access rule is asked first, then the purpose: one who takes no part in the case learns
# nothing from the answer, not even that a purpose was missing.


def _opened(vault: IdentityVault, row: Any) -> dict[str, Any]:
    return vault.open(Sealed(row.key_id, row.nonce, row.ciphertext), row.child_ref)


@router.get("/cases/{case_id}/export", summary="Exportul datelor persoanei / the person's data (art. 15)")
async def export(case_id: str, request: Request,
                 principal: Principal = Depends(permit("subject.export"))) -> dict[str, Any]:
    """Every identity version of the case's child (opened here, and only here), the child's
    cases with their reports, the restriction and the pseudonym aliases. Allowed while the
    case is restricted: the export is the person's right, not processing of the case."""
    runtime: Runtime = request.app.state.runtime
    vault, _ = _keys(runtime)
    async with runtime.unit_of_work() as uow:
        case = await _lead_case(uow, case_id, principal, "subject.export")
        rights_purpose(request, "subject.export")
        record_access(uow, principal, request, service=SERVICE, case_id=case_id, query={"export": "subject"})
        versions = await privacy.identity_versions(uow.session, case.child_ref)
        held = await privacy.cases_of_child(uow.session, case.child_ref)
        reports = await privacy.reports_of(uow.session, [c.case_id for c in held])
        restricted = await restrictions.restricted_among(uow.session, [c.case_id for c in held])
        aliases = await privacy.aliases_of(uow.session, case.child_ref)
    return {
        "service": SERVICE, "case_id": case_id, "child_ref": case.child_ref,
        "identity_versions": [{
            "version": v.version, "recorded_at": v.recorded_at.isoformat(),
            "source": "rectification" if v.rectified_by else "report",
            "report_id": v.report_id, "reporter": v.reporter, "identity": _opened(vault, v),
            "rectification": ({"by": v.rectified_by, "institution": v.institution, "purpose": v.purpose,
                               "purpose_text": v.purpose_text, "fields": v.fields,
                               "at": v.rectified_at.isoformat()} if v.rectified_by else None),
        } for v in versions],
        "cases": [{
            "case_id": c.case_id, "lead": c.lead, "informed": c.informed, "status": c.status,
            "opened_at": c.opened_at.isoformat(), "county": c.county, "uat_siruta": c.uat_siruta,
            "categories": c.categories, "urgency": c.urgency, "do_not_contact": c.do_not_contact,
            "deadlines": c.deadlines, "restricted": c.case_id in restricted,
            "reports": [{"report_id": r.report_id, "reporter": r.reporter, "categories": r.categories,
                         "received_at": r.received_at.isoformat(), "event_type": r.event_type,
                         "outcome": r.outcome} for r in reports if r.case_id == c.case_id],
        } for c in held],
        "pseudonym_aliases": [{"alias_ref": a.alias_ref, "recorded_at": a.recorded_at.isoformat()}
                              for a in aliases],
    }


class Correction(BaseModel):
    fields: dict[str, Any]


@router.post("/cases/{case_id}/identity", status_code=201,
             summary="Rectificarea identității / rectify the child's identity (art. 16)")
async def rectify(case_id: str, request: Request, correction: Correction = Body(...),
                  principal: Principal = Depends(permit("subject.rectify"))) -> dict[str, Any]:
    """A new identity version: the current one with the corrected fields, recorded with who
    and why; earlier versions stay as they were. The pseudonym stays; a corrected CNP gets an
    alias (services/intake/domain/rights.py)."""
    runtime: Runtime = request.app.state.runtime
    vault, key = _keys(runtime)
    async with runtime.unit_of_work() as uow:
        case = await _lead_case(uow, case_id, principal, "subject.rectify")
        stated = rights_purpose(request, "subject.rectify")
        record_access(uow, principal, request, service=SERVICE, case_id=case_id,
                      query={"rectify": ",".join(sorted(correction.fields))})
        current_row = await repository.current_identity(uow.session, case.child_ref)
        current = _opened(vault, current_row) if current_row is not None else None
        try:
            identity = rights.corrected(current, correction.fields)
        except rights.InvalidCorrection as exc:
            raise HTTPException(422, detail=reason("INVALID_CORRECTION", str(exc))) from None
        version_id = f"rectification-{uuid.uuid4().hex[:16]}"
        assert principal.institution is not None  # the lead's people only (check)
        await repository.add_identity_version(uow.session, case.child_ref, vault.seal(identity, case.child_ref),
                                              report_id=version_id, reporter=principal.institution,
                                              now=uow.now)
        await privacy.record_rectification(
            uow.session, report_id=version_id, child_ref=case.child_ref, case_id=case_id,
            rectified_by=principal.subject, institution=principal.institution, purpose=stated.code,
            purpose_text=stated.text, fields=sorted(correction.fields), rectified_at=uow.now)
        new_cnp = rights.cnp_corrected(current, correction.fields)
        if new_cnp is not None:
            await privacy.add_alias(uow.session, pseudonym_of(key, new_cnp, None, None, None), case.child_ref,
                                    uow.now)
    return {"case_id": case_id, "child_ref": case.child_ref, "version_id": version_id,
            "fields": sorted(correction.fields)}


class RestrictionBody(BaseModel):
    restricted: bool


@router.put("/cases/{case_id}/restriction",
            summary="Restricționarea prelucrării / restrict the case's processing (art. 18)")
async def restrict(case_id: str, body: RestrictionBody, request: Request,
                   principal: Principal = Depends(permit("subject.restrict"))) -> dict[str, Any]:
    """Restrict (or lift): recorded here and told to the other services on punte.cases
    (ro.punte.case.restricted.v1), which then take no command and send nothing about it."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.unit_of_work() as uow:
        await _lead_case(uow, case_id, principal, "subject.restrict")
        stated = rights_purpose(request, "subject.restrict")
        record_access(uow, principal, request, service=SERVICE, case_id=case_id,
                      query={"restricted": str(body.restricted).lower()})
        assert principal.institution is not None
        if await restrictions.is_restricted(uow.session, case_id) != body.restricted:
            await privacy.set_restriction(uow.session, case_id, restricted=body.restricted, at=uow.now,
                                          by=principal.subject, institution=principal.institution,
                                          purpose=stated.code)
            told = CaseRestricted(case_id=case_id, restricted=body.restricted, at=uow.now,
                                  by=principal.institution)
            uow.outbox.emit(CASES_TOPIC, CloudEvent.new(
                EventType.CASE_RESTRICTED.value, uow.source, told.model_dump(mode="json"), subject=case_id,
            ), key=case_id)
        row = await privacy.restriction_of(uow.session, case_id)
    at = row.decided_at if row is not None else datetime.now(timezone.utc)
    return {"case_id": case_id, "restricted": bool(row and row.restricted), "at": at.isoformat()}


async def refuse_if_restricted(session, case_id: str) -> None:
    """HTTP 409 CASE_RESTRICTED for a read or decision on a restricted case."""
    try:
        await restrictions.refuse_if_restricted(session, case_id)
    except Refused as exc:
        raise HTTPException(409, detail=reason(exc.code, exc.detail)) from None
