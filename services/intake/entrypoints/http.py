"""Intake over HTTP, for institutions without Kafka: the same CloudEvents contract (HTTP
binding, binary or structured mode), the same checks, idempotent by event id. A posted
event goes to the sender's ingress topic, so it takes the very path a Kafka message takes
and the audit trail sees it; the answer is the outcome intake sent back."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.access import Relation, case_relations, visible_categories
from contracts.reference import SENDER_HEADER, gateway_topic
from contracts.refusals import reason
from runtime.access import record_access
from runtime.authorization import check, permit
from runtime.cloudevents import CONTENT_TYPE, REQUIRED, is_json, repeated_attributes
from runtime.ingress import sender_key, source_refusal
from runtime.limits import wakeups_of
from runtime.service import Runtime
from runtime.telemetry import current_trace_headers, kafka_injects
from runtime.tokens import Principal
from services.intake.adapters import repository
from services.intake.adapters.report_keys import ReportKeys
from services.intake.adapters.repository import OUTCOME_CHANNEL
from services.intake.adapters.tables import case_reports, cases, duplicate_candidates
from services.intake.entrypoints.privacy import refuse_if_restricted
from services.intake.handlers import CLEAR_REPORT_TYPES, REPORT_TYPES

router = APIRouter(prefix="/v1", tags=["intake"])
# What anyone may fetch: the keys institutions seal reports to (public in access.yaml).
keys = APIRouter(tags=["intake"])
STRUCTURED = "application/cloudevents+json"
ATTRIBUTES = tuple(name.removeprefix("ce_") for name in REQUIRED)  # specversion, id, …


def _error(status: int, code: str, detail: str) -> HTTPException:
    return HTTPException(status, detail=reason(code, detail))


def _binary(request: Request, body: bytes) -> tuple[dict[str, str], bytes]:
    # The rule decode() holds Kafka messages to: the gateway writes content-type itself, so
    # it must check the one it was sent.
    if not is_json(request.headers.get("content-type")):
        raise _error(400, "MALFORMED_ENVELOPE", "binary mode: Content-Type must be application/json")
    repeated = repeated_attributes(k.lower() for k, _ in request.headers.items())
    if repeated:
        raise _error(400, "MALFORMED_ENVELOPE", f"headers given more than once: {', '.join(repeated)}")
    attributes = {k[3:]: v for k, v in request.headers.items() if k.lower().startswith("ce-")}
    return attributes, body


def _structured(body: bytes) -> tuple[dict[str, str], bytes]:
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _error(400, "MALFORMED_PAYLOAD", f"not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise _error(400, "MALFORMED_PAYLOAD", "a structured event is a JSON object")
    if "data_base64" in envelope:
        data = base64.b64decode(envelope.pop("data_base64"))
    elif "data" in envelope:
        # Signed bytes of `data` in structured mode: compact JSON, keys as sent (docs/contracts.md).
        data = json.dumps(envelope.pop("data"), ensure_ascii=False, separators=(",", ":")).encode()
    else:
        raise _error(400, "MALFORMED_PAYLOAD", "data or data_base64 is required")
    envelope.pop("datacontenttype", None)
    return {k: str(v) for k, v in envelope.items()}, data


class OutcomeBody(BaseModel):
    subject_id: str
    subject_type: str | None
    status: Literal["accepted", "rejected"]
    reason: dict[str, str] | None = None
    case_id: str | None = None
    urgency: str | None = None
    informed: list[str] = Field(default_factory=list)
    merged: bool = False
    possible_duplicate_of: list[str] = Field(default_factory=list)


def _answer(outcome: dict[str, Any]) -> JSONResponse:
    return JSONResponse(outcome, status_code=200 if outcome["status"] == "accepted" else 422)


@router.post(
    "/events", response_model=OutcomeBody,
    responses={202: {"description": "Still being processed; poll the Location"},
               422: {"model": OutcomeBody, "description": "Rejected, with a reason code"}},
    summary="Trimite un raport / submit a report (CloudEvents over HTTP)",
)
async def submit(request: Request, wait: float = Query(10, ge=0, le=30),
                 principal: Principal = Depends(permit("report.submit"))) -> JSONResponse:
    """Binary mode: `ce-*` headers with the report as the JSON body. Structured mode:
    `Content-Type: application/cloudevents+json` with `data` or `data_base64`. Sign as on
    Kafka (`keyid`, `signature`). The answer is the outcome, as on the delivery topic."""
    runtime: Runtime = request.app.state.runtime
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    attributes, data = _structured(body) if content_type == STRUCTURED else _binary(request, body)
    missing = [a for a in ATTRIBUTES if not attributes.get(a)]
    if missing:
        raise _error(400, "MALFORMED_ENVELOPE", f"missing attributes: {', '.join(missing)}")
    if principal.institution is None:
        raise _error(403, "SOURCE_MISMATCH", "the event's source is not your institution")
    refused = source_refusal(attributes["source"], principal.institution)  # as on Kafka
    if refused is not None:
        raise _error(403, refused.code, refused.detail)
    if attributes["type"] not in REPORT_TYPES:
        raise _error(400, "UNKNOWN_EVENT_TYPE", "this endpoint takes reports")
    if attributes["type"] in CLEAR_REPORT_TYPES and not runtime.settings.accept_clear_reports:
        # Refused before it reaches the ingress topic: a clear copy never lands there.
        raise _error(422, "CLEAR_REPORT_RETIRED", f"{attributes['type']} is no longer accepted; "
                     "send ro.punte.report.submitted.v3")
    message_key = sender_key(principal.institution, attributes["id"])  # as the consumer keys it
    known = await _answer_to(runtime, message_key)
    if known is None:
        headers = [(f"ce_{k}", v.encode()) for k, v in attributes.items()]
        headers += [("content-type", CONTENT_TYPE.encode()), (SENDER_HEADER, principal.institution.encode())]
        if not kafka_injects():  # the request's trace goes on to intake's consumer either way
            headers += [(k, v.encode()) for k, v in current_trace_headers().items()]
        # The gateway topic, not the institution's ingress topic: no service may write that one
        # (Kafka ACL); only intake writes this one, naming the institution the token proved.
        await runtime.producer.send_and_wait(gateway_topic(), value=data, key=attributes["id"].encode(),
                                             headers=headers)
        known = await _wait_for_answer(runtime, message_key, wait)
    if known is None:
        location = "/v1/events/outcome?" + urlencode({"source": attributes["source"], "id": attributes["id"]})
        return JSONResponse({"status": "processing", "location": location}, status_code=202,
                            headers={"Location": location})
    return _answer(known)


async def _answer_to(runtime: Runtime, message_key: str) -> dict[str, Any] | None:
    async with runtime.sessions() as session:
        return await repository.answer_to(session, message_key)


async def _wait_for_answer(runtime: Runtime, message_key: str, seconds: float) -> dict[str, Any] | None:
    """The outcome once intake records it: woken by its NOTIFY on OUTCOME_CHANNEL
    (runtime.limits.Wakeups), with a slow re-check should a notification be missed."""
    return await wakeups_of(runtime).wait(
        OUTCOME_CHANNEL, message_key, lambda: _answer_to(runtime, message_key), seconds,
        runtime.settings.outcome_recheck_seconds)


@router.get("/events/outcome", response_model=OutcomeBody, summary="Rezultatul unui raport / a report's outcome")
async def outcome(request: Request, source: str, id: str,
                  principal: Principal = Depends(permit("report.outcome.read"))) -> JSONResponse:
    own = principal.institution is not None and source == f"/institutions/{principal.institution}"
    check("report.outcome.read", principal, {Relation.OWN} if own else {Relation.ANY}, resource="event")
    assert principal.institution is not None  # check admits only the event's own institution
    known = await _answer_to(request.app.state.runtime, sender_key(principal.institution, id))
    if known is None:
        raise _error(404, "NOT_YET", "no answer yet")
    return _answer(known)


class CaseView(BaseModel):
    case_id: str
    child_ref: str
    county: str
    uat_siruta: int | None
    categories: list[str]
    urgency: str
    lead: str
    informed: list[str]
    status: str
    do_not_contact: bool
    deadlines: dict[str, str]
    opened_at: datetime
    reports: list[dict[str, Any]]
    possible_duplicates: list[dict[str, Any]]


async def _case_for(session: AsyncSession, case_id: str, principal: Principal,
                    action: str) -> tuple[sa.Row, frozenset[Relation]]:
    """The case and how the principal's institution stands to it, if ``action`` is allowed
    (contracts/reference/access.yaml); a case it takes no part in is UNKNOWN_CASE, as one
    that does not exist. Reporting alone is no part: reporters are not told case ids."""
    row = (await session.execute(sa.select(cases).where(cases.c.case_id == case_id))).first()
    relations = (case_relations(principal.institution, lead=row.lead, participants=row.informed)
                 if row is not None else frozenset({Relation.ANY}))
    check(action, principal, relations, resource="case")
    assert row is not None  # check refuses a case that does not exist
    # A restricted case (GDPR art. 18) is stored, and exported to the person, only.
    await refuse_if_restricted(session, case_id)
    return row, relations


@router.get("/cases/{case_id}", response_model=CaseView, summary="Un caz / one case")
async def case_view(case_id: str, request: Request,
                    principal: Principal = Depends(permit("case.read"))) -> CaseView:
    """The case as each institution taking part may see it: pseudonymous, no identity, only
    the risk categories its kind may know (need-to-know.yaml); possible duplicates are
    the lead's to see and decide."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.unit_of_work() as uow:
        row, relations = await _case_for(uow.session, case_id, principal, "case.read")
        record_access(uow, principal, request, service="intake", case_id=case_id)
        held = (await uow.session.execute(sa.select(case_reports).where(case_reports.c.case_id == case_id)
                                          .order_by(case_reports.c.received_at))).all()
        doubts = (await uow.session.execute(sa.select(duplicate_candidates)
                                            .where(duplicate_candidates.c.case_id == case_id))).all()

    def visible(categories: list[str]) -> list[str]:
        return list(visible_categories(principal.institution, categories))

    # The lead decides possible duplicates; nobody else is shown them.
    doubts = doubts if Relation.LEAD in relations else []

    return CaseView(
        case_id=row.case_id, child_ref=row.child_ref, county=row.county, uat_siruta=row.uat_siruta,
        categories=visible(row.categories), urgency=row.urgency, lead=row.lead, informed=row.informed,
        status=row.status, do_not_contact=row.do_not_contact, deadlines=row.deadlines,
        opened_at=row.opened_at,
        reports=[{"report_id": r.report_id, "reporter": r.reporter, "categories": visible(r.categories),
                  "received_at": r.received_at.isoformat()} for r in held],
        possible_duplicates=[{"case_id": d.candidate_case_id, "score": d.score, "status": d.status,
                              "decided_by": d.decided_by} for d in doubts],
    )


class Decision(BaseModel):
    decision: Literal["confirmed", "dismissed"]


@router.post("/cases/{case_id}/duplicates/{other_case_id}",
             summary="Confirmă sau respinge un posibil duplicat / decide a possible duplicate")
async def decide_duplicate(
    case_id: str, other_case_id: str, decision: Decision, request: Request,
    principal: Principal = Depends(permit("case.duplicates.decide")),
) -> dict[str, str]:
    """Only the lead institution's people decide; the decision is kept with who took it."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.sessions() as session, session.begin():
        await _case_for(session, case_id, principal, "case.duplicates.decide")
        updated = await session.execute(
            sa.update(duplicate_candidates)
            .where(duplicate_candidates.c.case_id == case_id,
                   duplicate_candidates.c.candidate_case_id == other_case_id,
                   duplicate_candidates.c.status == "pending")
            .values(status=decision.decision, decided_by=principal.subject,
                    decided_at=datetime.now(timezone.utc)))
    if updated.rowcount == 0:
        raise _error(409, "NOT_PENDING", "decided already, or never a possible duplicate")
    return {"case_id": case_id, "candidate_case_id": other_case_id, "status": decision.decision}


@keys.get("/.well-known/jwks.json", summary="Cheile de criptare ale intake / intake's encryption keys (JWKS)")
async def encryption_keys(request: Request) -> JSONResponse:
    """The public keys institutions seal a report's identifying parts to (report v3, JWE
    ECDH-ES+A256KW with A256GCM): the current key first, then keys still accepted during a
    rotation. Public, like any JWKS; only intake holds the private halves."""
    report_keys: ReportKeys = request.app.state.runtime.extras["report_keys"]
    return JSONResponse(report_keys.public_jwks(), headers={"Cache-Control": "public, max-age=300"})
