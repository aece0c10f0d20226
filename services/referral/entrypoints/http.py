"""The referral API for case managers: the team inbox, claiming, every step on a
referral, feedback, direct referrals, the case and its plan, the service directory. The
same commands as the signed Kafka events, applied by the same code."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from contracts.events import Consent, ReferralCommandName, ReferralRequest
from contracts.refusals import Refused, reason
from runtime.access import record_access
from runtime.service import Runtime
from runtime.tokens import Principal, require_role
from services.referral import handlers
from services.referral.adapters.tables import cases, history, referrals, services
from services.referral.domain.referral import OPEN, TERMINAL, Actor

router = APIRouter(prefix="/v1", tags=["referrals"])
case_manager = require_role("case-manager", "supervisor", "coordinator")
STATUS = {"UNKNOWN_REFERRAL": 404, "UNKNOWN_CASE": 404, "UNKNOWN_SERVICE": 404,
          "NOT_REFERRAL_RECIPIENT": 403, "NOT_REFERRER": 403, "NOT_SUPERVISOR": 403,
          "NOT_ALLOWED": 403, "NOT_CASE_LEAD": 403}


def _refused(exc: Refused) -> HTTPException:
    return HTTPException(STATUS.get(exc.code, 409), detail=reason(exc.code, exc.detail))


def _actor(principal: Principal) -> Actor:
    return Actor(principal.institution, principal.subject, principal.roles)


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


class ReferralView(BaseModel):
    referral_id: str
    case_id: str
    referrer: str
    to: str
    urgency: str
    categories: list[str]
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
    history: list[dict[str, Any]] = Field(default_factory=list)


def _view(row: sa.Row, steps: list[sa.Row] | None = None) -> ReferralView:
    return ReferralView(
        referral_id=row.referral_id, case_id=row.case_id, referrer=row.referrer, to=row.to_institution,
        urgency=row.urgency, categories=row.categories, state=row.state, kind=row.kind, owner=row.owner,
        service_id=row.service_id, forwarded_from=row.forwarded_from, legal_basis=row.legal_basis,
        do_not_contact=row.do_not_contact, deadlines=row.deadlines, requested_at=row.requested_at,
        updated_at=row.updated_at,
        history=[{"at": s.at.isoformat(), "command": s.command, "from": s.from_state, "to": s.to_state,
                  "by": s.actor_institution, "person": s.actor_person, "owner": s.owner,
                  "reason": s.reason, "outcome": s.outcome, "note": s.note} for s in steps or []],
    )


@router.get("/referrals/inbox", response_model=list[ReferralView],
            summary="Inboxul echipei / the team inbox")
async def team_inbox(request: Request, owner: Literal["all", "mine", "unassigned"] = "all",
                     include_closed: bool = False, limit: int = Query(100, le=500),
                     principal: Principal = Depends(case_manager)) -> list[ReferralView]:
    """Referrals to my institution, most urgent and oldest first."""
    query = sa.select(referrals).where(referrals.c.to_institution == principal.institution)
    if not include_closed:
        query = query.where(referrals.c.state.in_([s.value for s in OPEN]))
    if owner == "mine":
        query = query.where(referrals.c.owner == principal.subject)
    elif owner == "unassigned":
        query = query.where(referrals.c.owner.is_(None))
    async with _runtime(request).sessions() as session:
        rows = (await session.execute(
            query.order_by(referrals.c.urgency, referrals.c.requested_at).limit(limit))).all()
    return [_view(r) for r in rows]


@router.get("/referrals/sent", response_model=list[ReferralView], summary="Trimiterile mele / referrals we sent")
async def sent(request: Request, limit: int = Query(100, le=500),
               principal: Principal = Depends(case_manager)) -> list[ReferralView]:
    """What my institution referred, and where each stands: the referrer always knows."""
    async with _runtime(request).sessions() as session:
        rows = (await session.execute(
            sa.select(referrals).where(referrals.c.referrer == principal.institution)
            .order_by(referrals.c.requested_at.desc()).limit(limit))).all()
    return [_view(r) for r in rows]


@router.get("/referrals/{referral_id}", response_model=ReferralView, summary="O trimitere / one referral")
async def one(referral_id: str, request: Request, principal: Principal = Depends(case_manager)) -> ReferralView:
    async with _runtime(request).unit_of_work() as uow:
        row = (await uow.session.execute(
            sa.select(referrals).where(referrals.c.referral_id == referral_id))).first()
        if row is None or principal.institution not in (row.referrer, row.to_institution):
            raise _refused(Refused("UNKNOWN_REFERRAL", referral_id))
        record_access(uow, principal, request, service="referral", case_id=row.case_id)
        steps = (await uow.session.execute(sa.select(history).where(history.c.referral_id == referral_id)
                                           .order_by(history.c.id))).all()
    return _view(row, list(steps))


class CommandBody(BaseModel):
    command: ReferralCommandName
    reason: str | None = Field(default=None, min_length=1, max_length=1000)
    outcome: str | None = None
    note: str | None = Field(default=None, max_length=4000)
    assignee: str | None = None
    forward_to: str | None = None


@router.post("/referrals/{referral_id}/commands", response_model=ReferralView,
             responses={403: {"description": "Not yours to do"}, 404: {"description": "No such referral"},
                        409: {"description": "Not allowed now (ILLEGAL_TRANSITION, REASON_REQUIRED, …)"}},
             summary="Un pas pe o trimitere / a step on a referral")
async def command(referral_id: str, body: CommandBody, request: Request,
                  principal: Principal = Depends(case_manager)) -> ReferralView:
    """claim, assign (supervisor), acknowledge, accept, reject, start, hold, resume,
    complete (with an outcome code), fail, forward, cancel and mark-error (referrer), note
    (either side: progress and feedback)."""
    runtime = _runtime(request)
    config = handlers.Config.of(runtime)
    try:
        async with runtime.unit_of_work() as uow:
            await handlers.execute(uow, config, referral_id, body.command, _actor(principal),
                                   reason=body.reason, outcome=body.outcome, note=body.note,
                                   assignee=body.assignee, forward_to=body.forward_to)
    except Refused as exc:
        raise _refused(exc) from None
    return await one(referral_id, request, principal)


class RequestBody(BaseModel):
    case_id: str
    to: str | None = None
    service_id: str | None = None
    kind: Literal["service", "information-request"] = "service"
    note: str | None = Field(default=None, max_length=4000)
    consent: Consent | None = None


@router.post("/referrals", response_model=ReferralView, status_code=201,
             summary="Trimite către o instituție sau un serviciu / refer to an institution or a service")
async def refer(body: RequestBody, request: Request, principal: Principal = Depends(case_manager)) -> ReferralView:
    runtime = _runtime(request)
    config = handlers.Config.of(runtime)
    try:
        async with runtime.unit_of_work() as uow:
            referral_id = await handlers.request_referral(
                uow, config, principal.institution or "", ReferralRequest(**body.model_dump()),
                f"http|{principal.subject}|{uow.now.isoformat()}")
    except Refused as exc:
        raise _refused(exc) from None
    return await one(referral_id, request, principal)


class CaseView(BaseModel):
    case_id: str
    lead: str
    lead_manager: str | None
    urgency: str
    categories: list[str]
    status: str
    participants: list[str]
    do_not_contact: bool
    plan: list[ReferralView]


@router.get("/cases/{case_id}", response_model=CaseView, summary="Cazul și planul de servicii / the case and its plan")
async def case(case_id: str, request: Request, principal: Principal = Depends(case_manager)) -> CaseView:
    async with _runtime(request).unit_of_work() as uow:
        row = (await uow.session.execute(sa.select(cases).where(cases.c.case_id == case_id))).first()
        if row is None or principal.institution not in row.participants:
            raise _refused(Refused("UNKNOWN_CASE", case_id))
        record_access(uow, principal, request, service="referral", case_id=case_id)
        plan = (await uow.session.execute(sa.select(referrals).where(referrals.c.case_id == case_id)
                                          .order_by(referrals.c.requested_at))).all()
    return CaseView(case_id=row.case_id, lead=row.lead, lead_manager=row.lead_manager,
                    urgency=row.urgency, categories=row.categories, status=row.status,
                    participants=row.participants, do_not_contact=row.do_not_contact,
                    plan=[_view(r) for r in plan])


@router.post("/cases/{case_id}/{action}", response_model=CaseView,
             summary="Închide sau redeschide cazul / close or reopen the case")
async def close_or_reopen(case_id: str, action: Literal["close", "reopen"], request: Request,
                          principal: Principal = Depends(case_manager)) -> CaseView:
    """Only the lead institution; a case closes only when every referral of its plan is done."""
    runtime = _runtime(request)
    async with runtime.unit_of_work() as uow:
        row = (await uow.session.execute(sa.select(cases).where(cases.c.case_id == case_id)
                                         .with_for_update())).first()
        if row is None or principal.institution not in row.participants:
            raise _refused(Refused("UNKNOWN_CASE", case_id))
        if principal.institution != row.lead:
            raise _refused(Refused("NOT_CASE_LEAD", "only the lead institution"))
        if action == "close":
            still_open = await uow.session.scalar(
                sa.select(sa.func.count()).select_from(referrals)
                .where(referrals.c.case_id == case_id, referrals.c.state.notin_([s.value for s in TERMINAL])))
            if still_open:
                raise _refused(Refused("CASE_HAS_OPEN_REFERRALS", f"{still_open} referrals still open"))
        await uow.session.execute(sa.update(cases).where(cases.c.case_id == case_id).values(
            status="closed" if action == "close" else "open",
            closed_at=uow.now if action == "close" else None,
            lead_manager=row.lead_manager or principal.subject))
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
                    principal: Principal = Depends(require_role())) -> list[ServiceView]:
    """Services addressing the category; those with free places first, and each says why
    it is proposed where it is."""
    async with _runtime(request).sessions() as session:
        rows = (await session.execute(sa.select(services))).all()
    views = [_service_view(r) for r in rows if category is None or category in r.categories]
    return sorted(views, key=lambda v: (PROPOSALS.index(v.proposal), v.waiting or 0, v.name))


def _service_view(r: sa.Row) -> ServiceView:
    places = None if r.capacity is None or r.occupancy is None else max(r.capacity - r.occupancy, 0)
    if not r.accepting or places == 0:
        proposal = PROPOSALS[2]
    elif places is None:
        proposal = PROPOSALS[1]
    else:
        proposal = PROPOSALS[0]
    return ServiceView(service_id=r.service_id, provider=r.provider, name=r.name,
                       nomenclature_code=r.nomenclature_code, categories=r.categories,
                       capacity=r.capacity, occupancy=r.occupancy, waiting=r.waiting,
                       accepting=r.accepting, free_places=places, proposal=proposal)
