"""The auditors' API: search the trail and follow a case across institutions, verify it,
get signed checkpoints and proofs, let witnesses cosign, export for offline checking.
Every auditor query is itself recorded (an access event, audited like any message), with
its purpose: a code of contracts/reference/access-purposes.yaml. Who may call what is
contracts/reference/access.yaml (``permit``).

No answer carries a recorded value (decision 0016): entries show their digest form and
what became of the value (sealed, erased when and by which rule). Opening a sealed value
is break-glass (``POST /entries/{seq}/value``): a stated purpose, an access event, and the
case's lead is told."""
from __future__ import annotations

import base64
import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from contracts.refusals import Refused, reason
from runtime.access import record_access, stated_purpose
from runtime.authorization import permit
from runtime.control_characters import has_control_characters
from runtime.kafka import partition_bounds
from runtime.service import Runtime
from runtime.tokens import Principal
from services.audit import handlers
from services.audit.adapters import export_archive
from services.audit.adapters.tables import audit_entries, holding
from services.audit.domain import checkpoint
from services.audit.domain.entries import read_leaf
from services.audit.domain.spreadsheet import safe_cell

router = APIRouter(tags=["audit"])
# Sizes, indexes and offsets are PostgreSQL bigints: anything larger would fail there (500).
MAX_INT64 = 2**63 - 1


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _log(request: Request) -> handlers.Log:
    return _runtime(request).extras["audit_log"]


def _refused(exc: Refused, status: int = 404) -> HTTPException:
    return HTTPException(status, detail=reason(exc.code, exc.detail))


class ValueState(BaseModel):
    state: str = Field(description="sealed | erased | none (a tombstone) | in-v1-leaf (log version 1: "
                                   "the value is in the entry's own bytes, which are withheld) | missing")
    scope: str | None = Field(description="The data key's scope: case:<id>, report:<id> or network")
    erased_at: datetime | None
    erased_rule: str | None = Field(description="The retention rule (contracts/reference/retention.yaml)")


class Entry(BaseModel):
    seq: int
    topic: str
    partition: int
    offset: int
    event_id: str | None
    event_type: str | None
    source: str | None
    case_id: str | None
    child_ref: str | None
    actor: str | None
    institution: str | None
    purpose: str | None = Field(description="An access event's purpose code")
    recorded_at: datetime
    log_version: int
    entry_base64: str | None = Field(description="The exact bytes that were hashed (log version 2: the "
                                                 "record with its value's digest); null for a version 1 "
                                                 "entry, whose bytes hold the value")
    record: dict[str, Any] = Field(description="The entry in its digest form (value_sha256, never the value)")
    value: ValueState
    leaf_hash: str  # hex


class Entries(BaseModel):
    entries: list[Entry]
    limit: int
    offset: int


def _entry(row: sa.Row, value: ValueState) -> Entry:
    leaf = read_leaf(row.entry)
    return Entry(seq=row.seq, topic=row.topic, partition=row.partition, offset=row.offset,
                 event_id=row.event_id, event_type=row.event_type, source=row.source, case_id=row.case_id,
                 child_ref=row.child_ref, actor=row.actor, institution=row.institution, purpose=row.purpose,
                 recorded_at=row.recorded_at, log_version=leaf.version,
                 entry_base64=base64.b64encode(row.entry).decode() if leaf.version >= 2 else None,
                 record=leaf.digest_form, value=value, leaf_hash=row.leaf_hash.hex())


def _plain(**terms: str | None) -> None:
    """Refuse search terms with control characters (422), naming the term, not its value."""
    for name, value in terms.items():
        if has_control_characters(value):
            raise HTTPException(422, detail=reason("INVALID_CHARACTERS", name))


async def _audited_query(request: Request, principal: Principal, query: dict[str, Any]) -> None:
    """Record the auditor's read. A search term is an id of its column (``handlers.TERMS``),
    and is recorded as given only when the trail holds it there: anything else an auditor
    may type, a child's name in the wrong box included, is recorded as ``NOT_IN_TRAIL`` (it
    matches nothing), since the access event travels on punte.access and rests in the trail.
    The case read is the case term the trail holds; where a term is not held, what was read
    is the route's template, since the path may hold that term (the timeline's case)."""
    given = {k: str(v) for k, v in query.items() if v is not None}
    async with _runtime(request).unit_of_work() as uow:
        held = await handlers.held_terms(uow.session, {k: v for k, v in given.items() if k in handlers.TERMS})
        recorded = {k: handlers.NOT_IN_TRAIL if held.get(k) is False else v for k, v in given.items()}
        case_id = next((given[k] for k, found in held.items() if found and handlers.TERMS[k] == "case_id"), None)
        route = None if all(held.values()) else getattr(request.scope.get("route"), "path", None)
        record_access(uow, principal, request, service="audit", case_id=case_id, query=recorded, resource=route)


@router.get("/entries", response_model=Entries, summary="Caută în jurnal / search the trail")
async def search(request: Request, case_id: str | None = None, child_ref: str | None = None,
                 institution: str | None = None, actor: str | None = None, event_type: str | None = None,
                 topic: str | None = None, since: datetime | None = None, until: datetime | None = None,
                 limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_INT64),
                 principal: Principal = Depends(permit("audit.search"))) -> Entries:
    filters = {"case_id": case_id, "child_ref": child_ref, "institution": institution, "actor": actor,
               "event_type": event_type}
    _plain(**filters, topic=topic)
    query = sa.select(audit_entries)
    if terms := {column: value for column, value in filters.items() if value is not None}:
        query = query.where(holding(**terms))
    if topic is not None:
        query = query.where(audit_entries.c.topic == topic)
    if since is not None:
        query = query.where(audit_entries.c.recorded_at >= since)
    if until is not None:
        query = query.where(audit_entries.c.recorded_at < until)
    await _audited_query(request, principal, {**filters, "topic": topic, "since": since, "until": until})
    async with _runtime(request).sessions() as session:
        rows = (await session.execute(query.order_by(audit_entries.c.seq).limit(limit).offset(offset))).all()
        states = await handlers.value_states(session, rows)
    return Entries(entries=[_entry(r, ValueState(**states[r.seq].__dict__)) for r in rows],
                   limit=limit, offset=offset)


class OpenedValue(BaseModel):
    seq: int
    scope: str | None
    case_id: str | None
    value_sha256: str
    value_base64: str


@router.post("/entries/{seq}/value", response_model=OpenedValue,
             summary="Deschide o valoare sigilată (acces de urgență) / open a sealed value (break-glass)",
             responses={410: {"description": "ERASED: the value was erased (when, by which rule)"},
                        422: {"description": "PURPOSE_REQUIRED or UNKNOWN_PURPOSE"}})
async def open_value(request: Request, seq: int = Path(ge=1, le=MAX_INT64),
                     principal: Principal = Depends(permit("audit.value.open"))) -> OpenedValue:
    """Break-glass: the value an entry commits to, opened for a purpose the auditor states
    (X-Punte-Purpose or ?purpose=, a code of access-purposes.yaml; no default). The opening
    is an access event on punte.access in the same transaction, and the case's lead is told
    (notification). An erased value answers 410 ERASED with when and by which rule."""
    stated_purpose(request, "X-Punte-Purpose")  # refused before anything is opened
    runtime = _runtime(request)
    trail: handlers.Trail = runtime.extras["audit_trail"]
    try:
        async with runtime.unit_of_work() as uow:
            opened = await handlers.open_value(uow.session, trail.data_keys, seq)
            record_access(uow, principal, request, service="audit", case_id=opened.case_id,
                          query={"seq": str(seq), "scope": opened.scope or ""}, break_glass=True)
    except handlers.ValueErased as exc:
        raise HTTPException(410, detail={**reason(exc.code, exc.detail), "erased_at": exc.erased_at.isoformat(),
                                         "erased_rule": exc.rule}) from None
    except Refused as exc:
        raise _refused(exc) from None
    return OpenedValue(seq=opened.seq, scope=opened.scope, case_id=opened.case_id,
                       value_sha256=opened.value_sha256, value_base64=base64.b64encode(opened.value).decode())


class TimelineStep(BaseModel):
    seq: int
    recorded_at: datetime
    event_type: str | None
    institution: str | None
    actor: str | None
    topic: str


@router.get("/cases/{case_id}/timeline", response_model=list[TimelineStep],
            summary="Cronologia unui caz / a case's timeline across institutions")
async def timeline(case_id: str, request: Request,
                   principal: Principal = Depends(permit("audit.search"))) -> list[TimelineStep]:
    if has_control_characters(case_id):
        raise HTTPException(404, detail=reason("NOT_FOUND"))  # no case has such an id
    await _audited_query(request, principal, {"timeline": case_id})
    async with _runtime(request).sessions() as session:
        rows = (await session.execute(sa.select(audit_entries).where(holding(case_id=case_id))
                                      .order_by(audit_entries.c.seq))).all()
    return [TimelineStep(seq=r.seq, recorded_at=r.recorded_at, event_type=r.event_type,
                         institution=r.institution, actor=r.actor, topic=r.topic) for r in rows]


@router.get("/verify", summary="Verifică jurnalul / verify the stored trail")
async def verify(request: Request, principal: Principal = Depends(permit("audit.verify"))) -> dict:
    return (await verify_with_the_broker(_runtime(request))).__dict__


async def verify_with_the_broker(runtime: Runtime) -> handlers.Verification:
    """The stored trail, its tail against the broker's ends (GET /verify, and the service's
    own verification loop whose result /metrics shows)."""
    # The broker's ends first, the trail second: what was on the broker then and is audited
    # by the time the trail is read counts as audited, not as lagging.
    ends, ends_error = None, None
    try:
        trail: handlers.Trail = runtime.extras["audit_trail"]
        ends = await partition_bounds(runtime.settings.kafka_bootstrap, trail.topics)
    except Exception as exc:  # the broker away: the trail's tail is unknown, not verified
        ends_error = type(exc).__name__
    async with runtime.sessions() as session:
        return await handlers.verify_stored(session, ends=ends, ends_error=ends_error)


@router.get("/log-key", summary="Cheia publică a jurnalului / the log's verifier key")
async def log_key(request: Request, principal: Principal = Depends(permit("audit.checkpoint.read"))) -> dict[str, str]:
    log = _log(request)
    return {"origin": log.origin, "verifier_key": checkpoint.verifier_key(log.origin, log.public())}


@router.get("/checkpoints/latest", response_class=PlainTextResponse, summary="Ultimul punct de control semnat")
async def latest(request: Request, principal: Principal = Depends(permit("audit.checkpoint.read"))) -> str:
    return await _note(request, None)


@router.get("/checkpoints/{size}", response_class=PlainTextResponse, summary="Un punct de control / one checkpoint")
async def one(request: Request, size: int = Path(ge=0, le=MAX_INT64),
              principal: Principal = Depends(permit("audit.checkpoint.read"))) -> str:
    return await _note(request, size)


async def _note(request: Request, size: int | None) -> str:
    try:
        async with _runtime(request).sessions() as session:
            return await handlers.signed_note(session, size)
    except Refused as exc:
        raise _refused(exc) from None


@router.post("/checkpoints", response_class=PlainTextResponse,
             summary="Emite acum un punct de control / issue a checkpoint now")
async def issue(request: Request, principal: Principal = Depends(permit("audit.checkpoint.issue"))) -> str:
    async with _runtime(request).unit_of_work() as uow:
        await handlers.issue_checkpoint(uow, _log(request))
    return await _note(request, None)


@router.post("/checkpoints/{size}/cosignatures", response_class=PlainTextResponse,
             summary="Cosemnătura unui martor / a witness's cosignature")
async def cosign(request: Request, size: int = Path(ge=0, le=MAX_INT64),
                 line: str = Body(..., media_type="text/plain"),
                 principal: Principal = Depends(permit("audit.cosign"))) -> str:
    """A witness that checked this checkpoint against the one it saw before adds its
    tlog-cosignature line, signed with its own key: an institution's system, witnessing as
    its institution, or an auditor, as itself (the token's subject). The line counts only
    if a key the network holds for that witness verifies it."""
    witness = principal.institution or principal.subject
    try:
        async with _runtime(request).sessions() as session, session.begin():
            return await handlers.add_cosignature(session, size, witness, line, _runtime(request).keyring)
    except Refused as exc:
        raise _refused(exc, 404 if exc.code == "UNKNOWN_CHECKPOINT" else 422) from None


@router.get("/proofs/inclusion", summary="Dovada includerii / inclusion proof")
async def inclusion(request: Request, index: int = Query(ge=0, le=MAX_INT64), size: int = Query(ge=0, le=MAX_INT64),
                    principal: Principal = Depends(permit("audit.checkpoint.read"))) -> dict:
    try:
        async with _runtime(request).sessions() as session:
            proof = await handlers.inclusion(session, index, size)
            root = await handlers.root_at(session, size)
    except Refused as exc:
        raise _refused(exc, 422) from None
    return {"index": index, "size": size, "root": base64.b64encode(root).decode(),
            "proof": [base64.b64encode(h).decode() for h in proof]}


@router.get("/proofs/consistency", summary="Dovada consecvenței / consistency proof")
async def consistency(request: Request, first: int = Query(ge=0, le=MAX_INT64),
                      second: int = Query(ge=0, le=MAX_INT64),
                      principal: Principal = Depends(permit("audit.checkpoint.read"))) -> dict:
    try:
        async with _runtime(request).sessions() as session:
            proof = await handlers.consistency(session, first, second)
    except Refused as exc:
        raise _refused(exc, 422) from None
    return {"first": first, "second": second, "proof": [base64.b64encode(h).decode() for h in proof]}


@router.get("/export", summary="Export pentru verificare offline / export for offline verification",
            response_class=Response,
            responses={200: {"description": "a tar stream of the tree as tlog-tiles plus the entries "
                                            "(format=tar, decision 0034) or CSV (format=csv)",
                             "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}},
                                         "text/csv": {"schema": {"type": "string"}}}}})
async def export(request: Request, format: str = Query("tar", pattern="^(tar|csv)$"),
                 size: int | None = Query(None, ge=0, le=MAX_INT64),
                 principal: Principal = Depends(permit("audit.search"))) -> Response:
    """The trail at a signed checkpoint (the latest unless ``size``), for ``punte audit
    verify``: streamed as it is read, so a year of a county's trail never sits in memory."""
    await _audited_query(request, principal, {"export": format, "size": size})
    runtime = _runtime(request)
    try:
        async with runtime.sessions() as session:
            of = await handlers.export_checkpoint(session, size)
    except Refused as exc:
        raise _refused(exc) from None
    if format == "csv":
        return _csv(runtime, of)
    log = _log(request)

    async def body() -> AsyncIterator[bytes]:
        async with runtime.sessions() as session:
            async for chunk in export_archive.tar_stream(handlers.export_files(session, log, of),
                                                         int(of.issued_at.timestamp())):
                yield chunk

    return StreamingResponse(body(), media_type="application/x-tar", headers={
        "Content-Disposition": f"attachment; filename=punte-audit-{of.checkpoint.size}.tar"})


CSV_COLUMNS = ["index", "topic", "partition", "offset", "event_type", "case_id", "recorded_at", "log_version",
               "leaf_hash", "value_sha256", "value_state", "erased_at", "erased_rule"]


def _csv(runtime: Runtime, of: handlers.ExportOf) -> StreamingResponse:
    """The export for a spreadsheet: one row per entry, without proofs; no cell a
    spreadsheet would run as a formula (domain.spreadsheet). Streamed a page at a time."""

    async def body() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS)
        writer.writeheader()
        async with runtime.sessions() as session:
            async for row in handlers.table_rows(session, of):
                writer.writerow({k: safe_cell(v) for k, v in row.items()})
                if out.tell() > 1 << 16:  # handed on in chunks of about 64 KB
                    yield out.getvalue()
                    out.seek(0)
                    out.truncate()
        yield out.getvalue()

    return StreamingResponse(body(), media_type="text/csv",
                             headers={"Content-Disposition": "attachment; filename=punte-audit.csv"})
