"""Intake's use cases: the reports it takes, a polled batch at a time."""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from contracts.access import Relation, case_relations
from contracts.events import (
    CaseOpened,
    CaseReportAdded,
    EventType,
    Reporter,
    ReportSubmitted,
    ReportSubmittedV2,
    ReportSubmittedV3,
)
from contracts.refusals import Refused
from runtime import restrictions
from runtime.cloudevents import CloudEvent, derived_id
from runtime.inbox import Message, UnitOfWork
from runtime.ingress import (
    Window,
    authenticate,
    key_by_sender,
    named_refusal,
    refuse,
    reply,
    sender_of,
)
from runtime.signing import Keyring
from services.intake.adapters import privacy, repository
from services.intake.adapters.report_keys import ReportKeys
from services.intake.adapters.tables import cases, reports
from services.intake.adapters.vault import IdentityVault, Sealed
from services.intake.domain.casebook import Casebook, Known, OpenCase
from services.intake.domain.cases import NewCase, Rules, assess, merge, overlaps, upgrade
from services.intake.domain.errors import ReportRejected
from services.intake.domain.matching import likely_same_child
from services.intake.domain.sealed import join, read_sealed

SERVICE = "intake"
CASES_TOPIC = "punte.cases"
REPORT_TYPES = {EventType.REPORT_SUBMITTED.value: ReportSubmitted,
                EventType.REPORT_SUBMITTED_V2.value: ReportSubmittedV2,
                EventType.REPORT_SUBMITTED_V3.value: ReportSubmittedV3}
# Reports whose identity and story travel in clear: accepted while the transition lasts.
CLEAR_REPORT_TYPES = frozenset({EventType.REPORT_SUBMITTED.value, EventType.REPORT_SUBMITTED_V2.value})


@dataclass(frozen=True)
class Intake:
    """What intake's handlers need besides the message: keys, rules, vault, time window,
    the keys sealed reports are opened with, and whether reports in clear are still taken."""

    keyring: Keyring
    rules: Rules
    vault: IdentityVault
    window: Window = Window()
    report_keys: ReportKeys | None = None  # None: no sealed report opens (bootstrap requires them)
    accept_clear: bool = True


@dataclass(frozen=True)
class _Checked:
    """A report that passed every check, with the case it would open."""

    message: Message
    event: CloudEvent
    report: ReportSubmittedV2
    case: NewCase


@dataclass(frozen=True)
class _Failed:
    """A message refused: ``dead`` when it could not be read or trusted (dead-lettered)."""

    message: Message
    refused: Refused
    dead: bool


@dataclass
class _Writes:
    """What a batch writes, one statement per table (repository)."""

    identities: list[dict[str, Any]] = field(default_factory=list)
    households: list[tuple[str, str]] = field(default_factory=list)
    opened: dict[str, dict[str, Any]] = field(default_factory=dict)  # case id -> its row
    joined: dict[str, OpenCase] = field(default_factory=dict)  # earlier cases reports joined
    case_reports: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[tuple[str, str, float]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)


async def submit_report(uow: UnitOfWork, message: Message, intake: Intake) -> None:
    """One report: a batch of one (a replayed dead letter, a message tried alone)."""
    await submit_reports(uow, [message], intake)


async def submit_reports(uow: UnitOfWork, messages: list[Message], intake: Intake) -> None:
    """Reports from institutions become routed cases, join an open case of the same child,
    or are rejected with a reason; every sender gets the outcome. Batch-first (decision
    0033): each report is checked on its own, the database is asked once for the whole
    batch, the reports are decided in order against what it said and what earlier reports
    of the batch did (Casebook), and the batch is written with one statement per table."""
    decided = [_check(uow, message, intake) for message in messages]
    # A corrected CNP's pseudonym leads to the child's own (GDPR art. 16; domain/rights.py).
    pseudonyms = await privacy.resolve_aliases(
        uow.session, [d.case.child_ref for d in decided if isinstance(d, _Checked)])
    decided = [replace(d, case=replace(d.case, child_ref=pseudonyms[d.case.child_ref]))
               if isinstance(d, _Checked) else d for d in decided]
    book = await _casebook(uow, [d for d in decided if isinstance(d, _Checked)], intake.vault)
    writes = _Writes()
    for report in decided:
        message = report.message
        if isinstance(report, _Failed):
            if report.dead:
                answer = refuse(uow, message, SERVICE, report.refused).answer
            else:
                answer = reply(uow, message, accepted=False, code=report.refused.code,
                               detail=report.refused.detail)
            writes.answers.append(_answer(uow, message, "rejected", answer, reason=report.refused.code))
            continue
        writes.identities.append(repository.identity_version(
            report.case.child_ref, intake.vault.seal(_identity(report.report), report.case.child_ref),
            report_id=report.event.id, reporter=report.report.reporter.institution, now=uow.now))
        writes.households += [(report.case.child_ref, s) for s in report.case.sibling_refs]
        book.link(report.case.child_ref, report.case.sibling_refs)
        # A restricted case takes no new report: it opens a case of its own (domain/rights.py).
        joined = next((c for c in book.joinable(report.case.child_ref) if overlaps(c.categories, report.case)), None)
        if joined is not None:
            case_id, answer = _join(uow, report, joined, writes)
        else:
            case_id, answer = _open(uow, report, book, writes)
        book.known[report.case.child_ref] = _known(report.report)
        writes.answers.append(_answer(uow, message, "accepted", answer, case_id=case_id))
    await _write(uow, writes)


def _check(uow: UnitOfWork, message: Message, intake: Intake) -> _Checked | _Failed:
    """Everything decided from the message alone: is it authentic, a report intake takes,
    well formed, and what case it would open."""
    try:
        event = authenticate(message, intake.keyring, intake.window, now=uow.now)
    except Refused as exc:
        return _Failed(message, exc, dead=True)
    try:
        if event.type not in REPORT_TYPES:
            raise ReportRejected("UNKNOWN_EVENT_TYPE", f"intake does not handle {event.type}")
        if event.type in CLEAR_REPORT_TYPES and not intake.accept_clear:
            raise ReportRejected("CLEAR_REPORT_RETIRED", f"{event.type} is no longer accepted; send "
                                 f"{EventType.REPORT_SUBMITTED_V3.value}")
        parsed, sender = _parse(event), sender_of(message)
        # Before a sealed part is opened: the reporter is in a v3 report's clear part, and
        # intake opens nothing of a report it refuses (docs/contracts.md, check order).
        refused = named_refusal("reporter.institution", parsed.reporter.institution, sender)
        if refused is not None:
            raise refused
        report = _report(parsed, event, intake, sender)
        return _Checked(message, event, report, assess(report, intake.rules, uow.now))
    except Refused as exc:
        return _Failed(message, exc, dead=False)


async def _casebook(uow: UnitOfWork, checked: list[_Checked], vault: IdentityVault) -> Casebook:
    """What the database holds that the batch's reports need: the open cases of their
    children and of their children's households (locked), which of them are restricted, and
    the look-alikes of the children reported without a CNP with their current identity."""
    book = Casebook()
    if not checked:
        return book
    children = {c.case.child_ref for c in checked}
    households = await repository.households_of(uow.session, children)
    for row in households:
        book.link(row.child_ref, [row.sibling_ref])
    related = children | {row.sibling_ref for row in households} | {s for c in checked for s in c.case.sibling_refs}
    for row in await repository.open_cases_of_children(uow.session, related):
        book.add(_open_case(row))
    book.restricted = await restrictions.restricted_among(uow.session, book.cases)
    unnamed = [(c.case.described, c.case.child_ref) for c in checked if c.report.child.cnp is None]
    for row in await repository.lookalikes(uow.session, unnamed):
        book.add(_open_case(row))
        if row.child_ref not in book.known:
            identity = vault.open(Sealed(row.key_id, row.nonce, row.ciphertext), row.child_ref)
            birth = identity.get("birth_date")
            book.known[row.child_ref] = Known(identity.get("given_name"), identity.get("family_name"),
                                              date.fromisoformat(birth) if birth else None)
    return book


def _open_case(row: sa.Row) -> OpenCase:
    return OpenCase(case_id=row.case_id, child_ref=row.child_ref, county=row.county, uat_siruta=row.uat_siruta,
                    birth_year=row.birth_year, categories=list(row.categories), urgency=row.urgency,
                    lead=row.lead, informed=list(row.informed), opened_at=row.opened_at)


def _known(report: ReportSubmittedV2) -> Known:
    return Known(report.child.given_name, report.child.family_name, report.child.birth_date)


def _takes_part(institution: str, lead: str, informed: Iterable[str]) -> bool:
    """Whether an institution leads a case or is informed of it: only then may anything it
    is sent name the case (contracts.access)."""
    return bool({Relation.LEAD, Relation.PARTICIPANT}
                & case_relations(institution, lead=lead, participants=informed))


def _report(parsed: ReportSubmitted | ReportSubmittedV2 | ReportSubmittedV3, event: CloudEvent,
            intake: Intake, sender: str | None) -> ReportSubmittedV2:
    """Any version of a report, read as v2; a sealed one opened with intake's keys and
    shown to belong to this report."""
    if isinstance(parsed, ReportSubmitted):
        return upgrade(parsed)
    if isinstance(parsed, ReportSubmittedV3):
        if intake.report_keys is None:
            raise ReportRejected("SEALED_UNREADABLE", "intake holds no encryption key")
        return join(parsed, read_sealed(intake.report_keys.open(parsed.sealed)), event.id, sender)
    return parsed


def _parse(event: CloudEvent) -> ReportSubmitted | ReportSubmittedV2 | ReportSubmittedV3:
    """The report's model. The schema was checked, but JSON Schema's `$` lets a trailing
    line break through where the model does not: refuse it as the schema would, naming
    where and which rule, never the value (pydantic's message quotes it)."""
    try:
        return REPORT_TYPES[event.type].model_validate(event.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "/".join(str(p) for p in first["loc"]) or "(root)"
        raise ReportRejected("SCHEMA_VIOLATION", f"{where}: breaks {first['type']}") from None


def _join(uow: UnitOfWork, checked: _Checked, existing: OpenCase, writes: _Writes) -> tuple[str, dict[str, Any]]:
    message, event, report, case = checked.message, checked.event, checked.report, checked.case
    merged = merge(existing.categories, existing.urgency, case)
    existing.categories, existing.urgency = list(merged.categories), merged.urgency
    if existing.opened_here:
        writes.opened[existing.case_id].update(categories=existing.categories, urgency=existing.urgency)
    else:
        writes.joined[existing.case_id] = existing
    writes.case_reports.append(_case_report(existing.case_id, checked, uow))
    added = CaseReportAdded(
        case_id=existing.case_id, report_id=event.id, reporter=report.reporter,
        categories=list(merged.categories), new_categories=list(merged.new_categories),
        urgency=merged.urgency, lead=existing.lead, received_at=uow.now,
    )
    uow.outbox.emit(CASES_TOPIC, CloudEvent.new(
        EventType.CASE_REPORT_ADDED.value, uow.source, added.model_dump(mode="json"),
        subject=existing.case_id, id=derived_id(key_by_sender(message), EventType.CASE_REPORT_ADDED.value)),
        key=existing.case_id, cause=message.position)
    if not _takes_part(report.reporter.institution, existing.lead, existing.informed):
        # Another institution's case: the reporter learns that its report was taken, not
        # which case holds it (its id would let a reporter ask for the whole case).
        return existing.case_id, reply(uow, message, accepted=True)
    return existing.case_id, reply(uow, message, accepted=True, key=existing.case_id,
                                   case_id=existing.case_id, urgency=merged.urgency,
                                   informed=[existing.lead], merged=True)


def _open(uow: UnitOfWork, checked: _Checked, book: Casebook, writes: _Writes) -> tuple[str, dict[str, Any]]:
    message, event, report, case = checked.message, checked.event, checked.report, checked.case
    # Derived from the report, as every id its effects carry (ADR 0023): the same report
    # applied again to a database restored from before it opens the same case, not a second.
    case_id = f"case-{uuid.UUID(derived_id(key_by_sender(message), 'case')).hex[:16]}"
    lookalikes = _possible_duplicates(book, case) if report.child.cnp is None else []
    duplicates = {other.case_id: score for other, score in lookalikes}
    siblings = book.siblings_cases(case.child_ref)
    writes.opened[case_id] = dict(
        case_id=case_id, child_ref=case.child_ref, uat_siruta=case.uat_siruta,
        county=case.county, birth_year=case.described.birth_year, categories=list(case.categories),
        urgency=case.urgency, lead=case.lead, informed=list(case.informed), report_id=event.id,
        reporter=report.reporter.institution, opened_at=uow.now, do_not_contact=case.do_not_contact,
        deadlines={k: v.isoformat() for k, v in case.deadlines.items()},
    )
    book.add(OpenCase(case_id=case_id, child_ref=case.child_ref, county=case.county, uat_siruta=case.uat_siruta,
                      birth_year=case.described.birth_year, categories=list(case.categories),
                      urgency=case.urgency, lead=case.lead, informed=list(case.informed), opened_at=uow.now,
                      opened_here=True))
    writes.case_reports.append(_case_report(case_id, checked, uow))
    writes.duplicates += [(case_id, other, score) for other, score in duplicates.items()]
    opened = CaseOpened(
        case_id=case_id, child_ref=case.child_ref, uat_siruta=case.uat_siruta, county=case.county,
        categories=list(case.categories), urgency=case.urgency, lead=case.lead,
        informed=list(case.informed), report_id=event.id,
        reporter=Reporter(institution=report.reporter.institution, role=report.reporter.role),
        received_at=uow.now, do_not_contact=case.do_not_contact,
        place_of_occurrence=case.place_of_occurrence, deadlines=dict(case.deadlines),
        sibling_cases=siblings, possible_duplicate_of=sorted(duplicates),
    )
    uow.outbox.emit(CASES_TOPIC, CloudEvent.new(
        EventType.CASE_OPENED.value, uow.source, opened.model_dump(mode="json"), subject=case_id,
        id=derived_id(key_by_sender(message), EventType.CASE_OPENED.value),
    ), key=case_id, cause=message.position)
    reporter = report.reporter.institution
    if not _takes_part(reporter, case.lead, case.informed):
        return case_id, reply(uow, message, accepted=True)
    known = sorted(other.case_id for other, _ in lookalikes if _takes_part(reporter, other.lead, other.informed))
    return case_id, reply(uow, message, accepted=True, key=case_id, case_id=case_id, urgency=case.urgency,
                          informed=[case.lead, *case.informed], possible_duplicate_of=known or None)


def _case_report(case_id: str, checked: _Checked, uow: UnitOfWork) -> dict[str, Any]:
    return {"case_id": case_id, "report_id": checked.event.id, "reporter": checked.report.reporter.institution,
            "categories": list(checked.case.categories), "received_at": uow.now}


def _possible_duplicates(book: Casebook, case: NewCase) -> list[tuple[OpenCase, float]]:
    """Open cases that may be this child under another spelling, with their scores; a
    person decides."""
    found: list[tuple[OpenCase, float]] = []
    for other, described in book.lookalikes(case.described, case.child_ref):
        score = likely_same_child(case.described, described)
        if score is not None:
            found.append((other, round(score, 3)))
    return found


def _identity(report: ReportSubmittedV2) -> dict[str, Any]:
    """What the vault keeps of the child: all that identifies, nothing else."""
    child = report.child
    birth = child.birth_date
    return {
        "cnp": child.cnp, "given_name": child.given_name, "family_name": child.family_name,
        "birth_date": birth.isoformat() if birth else None,
        "birth_year": birth.year if birth else None,
        "estimated_age_years": child.estimated_age_years, "sex": child.sex,
        "uat_siruta": child.uat_siruta, "county": child.county, "address": child.address,
    }


async def record_failure(uow: UnitOfWork, message: Message, code: str) -> None:
    """A message whose handling failed still counts, with its rejection."""
    answer = reply(uow, message, accepted=False, code=code)
    await repository.record_answers(uow.session, [_answer(uow, message, "rejected", answer, reason=code)],
                                    uow.replaying)


async def _write(uow: UnitOfWork, writes: _Writes) -> None:
    session = uow.session
    await repository.add_identity_versions(session, writes.identities)
    await repository.link_households(session, writes.households)
    await repository.open_cases(session, list(writes.opened.values()))
    await repository.update_cases(session, [(c.case_id, c.categories, c.urgency) for c in writes.joined.values()])
    await repository.add_reports_to_cases(session, writes.case_reports)
    await repository.flag_duplicates(session, writes.duplicates)
    await repository.record_answers(session, writes.answers, uow.replaying)


def _answer(uow: UnitOfWork, message: Message, outcome: str, answer: dict[str, Any],
            reason: str | None = None, case_id: str | None = None) -> dict[str, Any]:
    return dict(message_key=key_by_sender(message), event_id=message.header("ce_id"),
                event_type=message.header("ce_type"), sender=sender_of(message), received_at=uow.now,
                outcome=outcome, reason_code=reason, case_id=case_id, answer=answer)


async def stats(session) -> dict:
    count = sa.func.count
    total, outcomes, accepted, rejected = (await session.execute(sa.select(
        count(), count(reports.c.outcome), count().filter(reports.c.outcome == "accepted"),
        count().filter(reports.c.outcome == "rejected"),
    ).select_from(reports))).one()
    opened = await session.scalar(sa.select(count()).select_from(cases))
    return {"reports": total, "outcomes": outcomes, "accepted": accepted, "rejected": rejected,
            "cases": opened}
