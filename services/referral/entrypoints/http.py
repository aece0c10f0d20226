"""The referral API for case managers: the team inbox, claiming, every step on a
referral, feedback, direct referrals, the case and its plan, the service directory. The
same commands as the signed Kafka events, applied by the same code."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from contracts.access import Denied, View, view_of, visible_categories
from contracts.events import Consent, ReferralCommandName, ReferralRequest
from contracts.reference import counties, institutions, risk_categories, social_services
from contracts.refusals import Refused, reason
from runtime import restrictions
from runtime.access import record_access
from runtime.authorization import check, http_refusal, permit
from runtime.service import Runtime
from runtime.tokens import Principal
from services.referral import handlers, retention
from services.referral.adapters import notes as case_notes
from services.referral.adapters import repository
from services.referral.domain import fhir, hsds, visibility
from services.referral.domain.referral import Actor

router = APIRouter(prefix="/v1", tags=["referrals"])
STATUS = {"UNKNOWN_REFERRAL": 404, "UNKNOWN_CASE": 404, "UNKNOWN_SERVICE": 404,
          "NOT_REFERRAL_RECIPIENT": 403, "NOT_REFERRER": 403, "NOT_SUPERVISOR": 403,
          "NOT_ALLOWED": 403, "UNKNOWN_REASON": 422, "NOTE_REQUIRED": 422, "UNKNOWN_CLOSURE_REASON": 422}
# Free text and ids go to PostgreSQL, whose text holds no NUL: refused as invalid (422).
Text = Annotated[str, Field(pattern=r"^[^\x00]*$")]
Limit = Annotated[int, Query(ge=1, le=500)]


def _refused(exc: Refused) -> HTTPException:
    if isinstance(exc, Denied):
        return http_refusal(exc)
    return HTTPException(STATUS.get(exc.code, 409), detail=reason(exc.code, exc.detail))


def _actor(principal: Principal) -> Actor:
    return Actor(principal.institution, principal.subject, principal.roles)


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


class NoteView(BaseModel):
    note_id: str
    at: datetime
    command: str | None = Field(default=None, description="The step that added it (request: with the referral)")
    by: str | None = Field(default=None, description="The institution that wrote it")
    person: str | None = None
    text: str | None = Field(default=None, description="Full view only; null in a summary, or once the case "
                                                       "was erased (erased: true)")
    erased: bool = False


class ReferralView(BaseModel):
    referral_id: str
    case_id: str
    referrer: str
    to: str
    urgency: str
    categories: list[str] = Field(description="Only the risk categories the reader's institution may know")
    state: str
    kind: str
    owner: str | None
    service_id: str | None
    forwarded_from: str | None
    legal_basis: str
    do_not_contact: bool
    deadlines: dict[str, str]
    requested_at: datetime
    updated_at: datetime
    outcome: str | None = Field(default=None, description="The outcome code, once completed")
    view: Literal["full", "summary"] = Field(
        description="full: everything; summary (a referrer or reporter that takes no part in the case): "
                    "no history, reasons or people, and of the notes only that they exist")
    history: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[NoteView] = Field(
        default_factory=list, description="The referral's notes in the case file (one referral's read only); "
                                          "reading them is recorded like any read of the case")


def _referral(row: sa.Row, steps: list[sa.Row] | None = None, notes: list[sa.Row] | None = None,
              texts: dict[str, str | None] | None = None) -> dict[str, Any]:
    texts = texts or {}
    return dict(
        referral_id=row.referral_id, case_id=row.case_id, referrer=row.referrer, to=row.to_institution,
        urgency=row.urgency, categories=row.categories, state=row.state, kind=row.kind, owner=row.owner,
        service_id=row.service_id, forwarded_from=row.forwarded_from, legal_basis=row.legal_basis,
        do_not_contact=row.do_not_contact, deadlines=row.deadlines, requested_at=row.requested_at,
        updated_at=row.updated_at, outcome=row.outcome,
        history=[{"at": s.at.isoformat(), "command": s.command, "from": s.from_state, "to": s.to_state,
                  "by": s.actor_institution, "person": s.actor_person, "owner": s.owner,
                  "reason": s.reason, "outcome": s.outcome, "note_id": s.note_id,
                  "note": texts.get(s.note_id) if s.note_id else None} for s in steps or []],
        notes=[{"note_id": n.note_id, "at": n.at, "command": n.command, "by": n.author_institution,
                "person": n.author_person, "text": texts.get(n.note_id),
                "erased": n.note_id in texts and texts[n.note_id] is None} for n in notes or []],
    )


def _seen(principal: Principal, row: sa.Row, case: visibility.Sides | None,
          steps: list[sa.Row] | None = None, notes: list[sa.Row] | None = None,
          texts: dict[str, str | None] | None = None) -> ReferralView | None:
    """The referral as the principal's institution may see it; None: not at all."""
    relations = visibility.to_referral(principal.institution, referrer=row.referrer, to=row.to_institution,
                                       case=case)
    shown = visibility.seen(_referral(row, steps, notes, texts), principal.institution, relations)
    return ReferralView(**shown) if shown is not None else None


def _listed(principal: Principal, rows: list[sa.Row]) -> list[ReferralView]:
    views = (_seen(principal, row, repository.case_sides(row)) for row in rows)
    return [v for v in views if v is not None]


@router.get("/referrals/inbox", response_model=list[ReferralView],
            summary="Inboxul echipei / the team inbox")
async def team_inbox(request: Request, owner: Literal["all", "mine", "unassigned"] = "all",
                     include_closed: bool = False, limit: Limit = 100,
                     principal: Principal = Depends(permit("referral.list"))) -> list[ReferralView]:
    """Referrals to my institution, most urgent and oldest first."""
    async with _runtime(request).sessions() as session:
        rows = await repository.inbox_of(session, principal.institution, person=principal.subject, owner=owner,
                                         include_closed=include_closed, limit=limit)
    return _listed(principal, rows)


@router.get("/referrals/sent", response_model=list[ReferralView], summary="Trimiterile mele / referrals we sent")
async def sent(request: Request, limit: Limit = 100,
               principal: Principal = Depends(permit("referral.list"))) -> list[ReferralView]:
    """What my institution referred, and where each stands: the referrer always knows (in
    summary, when it takes no part in the case)."""
    async with _runtime(request).sessions() as session:
        rows = await repository.sent_by(session, principal.institution, limit=limit)
    return _listed(principal, rows)


@router.get("/referrals/{referral_id}", response_model=ReferralView, summary="O trimitere / one referral")
async def one(referral_id: str, request: Request,
              principal: Principal = Depends(permit("referral.read"))) -> ReferralView:
    return await _read(referral_id, request, principal)


class FhirJSON(JSONResponse):
    media_type = fhir.MEDIA_TYPE


@router.get("/referrals/{referral_id}/fhir", response_class=FhirJSON,
            responses={200: {"content": {fhir.MEDIA_TYPE: {}},
                             "description": "A FHIR R4 Bundle (collection): the Task and its ServiceRequest"}},
            summary="O trimitere ca FHIR R4 / one referral as FHIR R4 (Task + ServiceRequest)")
async def one_as_fhir(referral_id: str, request: Request,
                      principal: Principal = Depends(permit("referral.read"))) -> FhirJSON:
    """The referral as the reader may see it (the same rule, view and need-to-know as
    ``GET /v1/referrals/{referral_id}``, and recorded as a read the same way), in FHIR R4:
    codes only, no notes, no people, the child only as the case's pseudonymous id."""
    seen = await _read(referral_id, request, principal)
    labels = {c.id: c.label_ro for c in risk_categories().values()}
    return FhirJSON(fhir.bundle(seen.model_dump(mode="json"), labels))


async def _read(referral_id: str, request: Request, principal: Principal,
                action: str = "referral.read") -> ReferralView:
    """One referral as the principal may see it, once ``action`` allows it (the reading, or
    the command or request whose result it shows)."""
    async with _runtime(request).unit_of_work() as uow:
        row = await repository.referral_of(uow.session, referral_id)
        if row is None:
            raise _refused(Refused("UNKNOWN_REFERRAL", "no such referral"))
        case = await repository.sides_of_case(uow.session, row.case_id)
        relations = visibility.to_referral(principal.institution, referrer=row.referrer, to=row.to_institution,
                                           case=case)
        check(action, principal, relations, "referral")
        try:
            await restrictions.refuse_if_restricted(uow.session, row.case_id)
        except Refused as exc:
            raise _refused(exc) from None
        record_access(uow, principal, request, service="referral", case_id=row.case_id)
        steps = await repository.steps_of(uow.session, referral_id)
        notes = await case_notes.of_referral(uow.session, referral_id)
        # A note is opened only for a full view; a summary learns that it exists.
        texts: dict[str, str | None] = {}
        if view_of(relations) is View.FULL:
            data_keys = handlers.Config.of(_runtime(request)).data_keys
            texts = await case_notes.opened(uow.session, data_keys, row.case_id, notes)
    seen = _seen(principal, row, case, steps, notes, texts)
    if seen is None:  # allowed to read, shown nothing: the table would be inconsistent
        raise _refused(Refused("UNKNOWN_REFERRAL", "no such referral"))
    return seen


class CommandBody(BaseModel):
    command: ReferralCommandName
    reason: Text | None = Field(default=None, min_length=1, max_length=1000)
    outcome: Text | None = None
    note: Text | None = Field(default=None, max_length=4000)
    assignee: Text | None = Field(default=None, max_length=100)
    forward_to: Text | None = None


@router.post("/referrals/{referral_id}/commands", response_model=ReferralView,
             responses={403: {"description": "Not yours to do"}, 404: {"description": "No such referral"},
                        409: {"description": "Not allowed now (ILLEGAL_TRANSITION, REASON_REQUIRED, …)"}},
             summary="Un pas pe o trimitere / a step on a referral")
async def command(referral_id: str, body: CommandBody, request: Request,
                  principal: Principal = Depends(permit("referral.command"))) -> ReferralView:
    """claim, assign (supervisor), acknowledge, accept, reject, start, hold, resume,
    complete (with an outcome code), fail, forward, cancel and mark-error (referrer; of a
    statutory referral, the case's lead or a supervisor), note (either side: progress and
    feedback)."""
    runtime = _runtime(request)
    config = handlers.Config.of(runtime)
    try:
        async with runtime.unit_of_work() as uow:
            await handlers.execute(uow, config, referral_id, body.command, _actor(principal),
                                   reason=body.reason, outcome=body.outcome, note=body.note,
                                   assignee=body.assignee, forward_to=body.forward_to)
    except Refused as exc:
        raise _refused(exc) from None
    return await _read(referral_id, request, principal, "referral.command")


class RequestBody(BaseModel):
    case_id: Text
    to: Text | None = None
    service_id: Text | None = None
    kind: Literal["service", "information-request"] = "service"
    note: Text | None = Field(default=None, max_length=4000)
    consent: Consent | None = None


@router.post("/referrals", response_model=ReferralView, status_code=201,
             responses={403: {"description": "NOT_CASE_PARTICIPANT: only the lead and participants refer"},
                        404: {"description": "No such case (or none the institution takes part in)"}},
             summary="Trimite către o instituție sau un serviciu / refer to an institution or a service")
async def refer(body: RequestBody, request: Request,
                principal: Principal = Depends(permit("referral.request"))) -> ReferralView:
    runtime = _runtime(request)
    config = handlers.Config.of(runtime)
    try:
        async with runtime.unit_of_work() as uow:
            referral_id = await handlers.request_referral(
                uow, config, principal.institution or "", ReferralRequest(**body.model_dump()),
                f"http|{principal.subject}|{uow.now.isoformat()}", roles=principal.roles)
    except Refused as exc:
        raise _refused(exc) from None
    # An institution's system may refer without reading referrals: it is shown what it made.
    return await _read(referral_id, request, principal, "referral.request")


class CaseView(BaseModel):
    case_id: str
    lead: str
    lead_manager: str | None
    urgency: str
    categories: list[str] = Field(description="Only the risk categories the reader's institution may know")
    status: str
    participants: list[str]
    do_not_contact: bool
    plan: list[ReferralView] = Field(description="The lead: every referral; others: those they are a side of")


@router.get("/cases/{case_id}", response_model=CaseView, summary="Cazul și planul de servicii / the case and its plan")
async def case(case_id: str, request: Request, principal: Principal = Depends(permit("case.read"))) -> CaseView:
    async with _runtime(request).unit_of_work() as uow:
        row = await repository.case_of(uow.session, case_id)
        if row is None:
            raise _refused(Refused("UNKNOWN_CASE", "no such case"))
        sides = repository.sides_of(row)
        relations = visibility.to_case(principal.institution, sides)
        check("case.read", principal, relations, "case")
        try:
            await restrictions.refuse_if_restricted(uow.session, case_id)
        except Refused as exc:
            raise _refused(exc) from None
        record_access(uow, principal, request, service="referral", case_id=case_id)
        plan = await repository.plan_of(uow.session, case_id)
    listed = [r for r in plan if visibility.in_plan_of(principal.institution, relations,
                                                       referrer=r.referrer, to=r.to_institution)]
    views = (_seen(principal, r, sides) for r in listed)
    return CaseView(case_id=row.case_id, lead=row.lead, lead_manager=row.lead_manager,
                    urgency=row.urgency, categories=list(visible_categories(principal.institution, row.categories)),
                    status=row.status, participants=row.participants, do_not_contact=row.do_not_contact,
                    plan=[v for v in views if v is not None])


class Closure(BaseModel):
    reason: str = Field(default=retention.DEFAULT_REASON, max_length=100,
                        description="Closing: a code of contracts/reference/case-closure-reasons.yaml")


@router.post("/cases/{case_id}/{action}", response_model=CaseView,
             summary="Închide sau redeschide cazul / close or reopen the case")
async def close_or_reopen(case_id: str, action: Literal["close", "reopen"], request: Request,
                          closure: Closure | None = None,
                          principal: Principal = Depends(permit("case.close"))) -> CaseView:
    """Only the lead institution; a case closes only when every referral of its plan is done,
    once, with a reason from the catalogue. Every service hears ro.punte.case.closed.v1 (or
    .reopened) and keeps the case for the closed-case period of the retention schedule."""
    runtime = _runtime(request)
    async with runtime.unit_of_work() as uow:
        row = await repository.case_of(uow.session, case_id, for_update=True)
        if row is None:
            raise _refused(Refused("UNKNOWN_CASE", "no such case"))
        check("case.close", principal, visibility.to_case(principal.institution, repository.sides_of(row)), "case")
        assert principal.institution is not None  # check admits only the lead's people
        try:
            await restrictions.refuse_if_restricted(uow.session, case_id)
            if action == "close":
                still_open = await repository.open_in_plan(uow.session, case_id)
                if still_open:
                    raise Refused("CASE_HAS_OPEN_REFERRALS", f"{still_open} referrals still open")
                await retention.close_case(uow, row, principal.institution, (closure or Closure()).reason,
                                           runtime.retention())
            else:
                await retention.reopen_case(uow, row, principal.institution)
        except Refused as exc:
            raise _refused(exc) from None
        await repository.set_status(uow.session, case_id, closed=action == "close", at=uow.now,
                                    lead_manager=row.lead_manager or principal.subject)
    return await case(case_id, request, principal)


class ServiceView(BaseModel):
    service_id: str
    provider: str
    name: str
    nomenclature_code: str | None
    categories: list[str]
    capacity: int | None
    occupancy: int | None
    waiting: int | None
    accepting: bool
    free_places: int | None
    proposal: str


# How the directory proposes a service, best first.
PROPOSALS = ("locuri libere / free places", "capacitate necunoscută / capacity unknown",
             "fără locuri libere sau închis / full or not accepting")


@router.get("/services", response_model=list[ServiceView], summary="Catalogul serviciilor / the service directory")
async def directory(request: Request, category: str | None = None,
                    principal: Principal = Depends(permit("directory.read"))) -> list[ServiceView]:
    """Services addressing the category; those with free places first, and each says why
    it is proposed where it is."""
    async with _runtime(request).sessions() as session:
        rows = await repository.directory(session)
    views = [_service_view(r) for r in rows if category is None or category in r["categories"]]
    return sorted(views, key=lambda v: (PROPOSALS.index(v.proposal), v.waiting or 0, v.name))


@router.get("/services/hsds", summary="Catalogul serviciilor ca Open Referral HSDS 3.0 / the directory as HSDS 3.0")
async def directory_as_hsds(request: Request,
                            principal: Principal = Depends(permit("directory.read"))) -> dict[str, Any]:
    """The whole directory as one HSDS 3.0 Page of services (as HSDS's ``GET /services/{id}``
    gives each): the provider as organization, the address as location, the county as
    service area; categories, nomenclature code, places and waiting list as attributes."""
    async with _runtime(request).sessions() as session:
        rows = await repository.directory(session)
    return hsds.page(rows, {s.id: s for s in social_services()}, institutions(), counties(), risk_categories())


def _service_view(r: Mapping[str, Any]) -> ServiceView:
    capacity, occupancy = r["capacity"], r["occupancy"]
    places = None if capacity is None or occupancy is None else max(capacity - occupancy, 0)
    if not r["accepting"] or places == 0:
        proposal = PROPOSALS[2]
    elif places is None:
        proposal = PROPOSALS[1]
    else:
        proposal = PROPOSALS[0]
    return ServiceView(**{name: r[name] for name in ("service_id", "provider", "name", "nomenclature_code",
                                                     "categories", "capacity", "occupancy", "waiting", "accepting")},
                       free_places=places, proposal=proposal)
