"""Intake's use cases: one function per message it handles."""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
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
from runtime.ingress import Refusal, Window, key_by_sender, receive, reply, sender_of
from runtime.signing import Keyring
from services.intake.adapters import privacy, repository
from services.intake.adapters.report_keys import ReportKeys
from services.intake.adapters.tables import cases, reports
from services.intake.adapters.vault import IdentityVault, Sealed
from services.intake.domain.cases import NewCase, Rules, assess, merge, overlaps, upgrade
from services.intake.domain.errors import ReportRejected
from services.intake.domain.matching import Described, likely_same_child
from services.intake.domain.rights import joinable
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


async def submit_report(uow: UnitOfWork, message: Message, intake: Intake) -> None:
    """A report from an institution becomes a routed case, joins an open case of the same
    child, or is rejected with a reason; the sender always gets the outcome."""
    event = receive(uow, message, intake.keyring, SERVICE, intake.window)
    if isinstance(event, Refusal):
        await _record(uow, message, "rejected", event.answer, reason=event.code)
        return
    try:
        if event.type not in REPORT_TYPES:
            raise ReportRejected("UNKNOWN_EVENT_TYPE", f"intake does not handle {event.type}")
        if event.type in CLEAR_REPORT_TYPES and not intake.accept_clear:
            raise ReportRejected("CLEAR_REPORT_RETIRED", f"{event.type} is no longer accepted; send "
                                 f"{EventType.REPORT_SUBMITTED_V3.value}")
        report = _report(event, intake, sender_of(message))
        if report.reporter.institution != sender_of(message):
            raise ReportRejected("SOURCE_MISMATCH", "reporter.institution is not the sender")
        case = assess(report, intake.rules, uow.now)
    except Refused as exc:
        answer = reply(uow, message, accepted=False, code=exc.code, detail=exc.detail)
        await _record(uow, message, "rejected", answer, reason=exc.code)
        return

    # A corrected CNP's pseudonym leads to the child's own (GDPR art. 16; domain/rights.py).
    case = replace(case, child_ref=await privacy.resolve_alias(uow.session, case.child_ref))
    await repository.add_identity_version(uow.session, case.child_ref,
                                          intake.vault.seal(_identity(report), case.child_ref),
                                          report_id=event.id, reporter=report.reporter.institution,
                                          now=uow.now)
    await repository.link_household(uow.session, case.child_ref, case.sibling_refs)
    open_cases = await repository.open_cases_of(uow.session, case.child_ref)
    # A restricted case takes no new report: it opens a case of its own (domain/rights.py).
    open_cases = joinable(open_cases, await restrictions.restricted_among(uow.session, [c.case_id for c in open_cases]))
    joined = next((c for c in open_cases if overlaps(c.categories, case)), None)
    if joined is not None:
        case_id, answer = await _join(uow, message, event, report, case, joined)
    else:
        case_id, answer = await _open(uow, message, event, report, case, intake.vault)
    await _record(uow, message, "accepted", answer, case_id=case_id)


def _takes_part(institution: str, lead: str, informed: Iterable[str]) -> bool:
    """Whether an institution leads a case or is informed of it: only then may anything it
    is sent name the case (contracts.access)."""
    return bool({Relation.LEAD, Relation.PARTICIPANT}
                & case_relations(institution, lead=lead, participants=informed))


def _report(event: CloudEvent, intake: Intake, sender: str | None) -> ReportSubmittedV2:
    """Any version of a report, read as v2; a sealed one opened with intake's keys and
    shown to belong to this report."""
    parsed = _parse(event)
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


async def _join(uow: UnitOfWork, message: Message, event: CloudEvent, report: ReportSubmittedV2,
                case: NewCase, existing: sa.Row) -> tuple[str, dict[str, Any]]:
    merged = merge(existing.categories, existing.urgency, case)
    await repository.update_case(uow.session, existing.case_id, list(merged.categories), merged.urgency)
    await repository.add_report_to_case(uow.session, existing.case_id, event.id,
                                        report.reporter.institution, list(case.categories), uow.now)
    added = CaseReportAdded(
        case_id=existing.case_id, report_id=event.id, reporter=report.reporter,
        categories=list(merged.categories), new_categories=list(merged.new_categories),
        urgency=merged.urgency, lead=existing.lead, received_at=uow.now,
    )
    uow.outbox.emit(CASES_TOPIC, CloudEvent.new(
        EventType.CASE_REPORT_ADDED.value, uow.source, added.model_dump(mode="json"),
        subject=existing.case_id, id=derived_id(key_by_sender(message), EventType.CASE_REPORT_ADDED.value)),
        key=existing.case_id)
    if not _takes_part(report.reporter.institution, existing.lead, existing.informed):
        # Another institution's case: the reporter learns that its report was taken, not
        # which case holds it (its id would let a reporter ask for the whole case).
        return existing.case_id, reply(uow, message, accepted=True)
    return existing.case_id, reply(uow, message, accepted=True, key=existing.case_id,
                                   case_id=existing.case_id, urgency=merged.urgency,
                                   informed=[existing.lead], merged=True)


async def _open(uow: UnitOfWork, message: Message, event: CloudEvent, report: ReportSubmittedV2,
                case: NewCase, vault: IdentityVault) -> tuple[str, dict[str, Any]]:
    # Derived from the report, as every id its effects carry (ADR 0023): the same report
    # applied again to a database restored from before it opens the same case, not a second.
    case_id = f"case-{uuid.UUID(derived_id(key_by_sender(message), 'case')).hex[:16]}"
    lookalikes = await _possible_duplicates(uow, case, vault) if report.child.cnp is None else []
    duplicates = {row.case_id: score for row, score in lookalikes}
    siblings = await repository.open_cases_of_siblings(uow.session, case.child_ref)
    await repository.open_case(
        uow.session, case_id=case_id, child_ref=case.child_ref, uat_siruta=case.uat_siruta,
        county=case.county, birth_year=case.described.birth_year, categories=list(case.categories),
        urgency=case.urgency, lead=case.lead, informed=list(case.informed), report_id=event.id,
        reporter=report.reporter.institution, opened_at=uow.now, do_not_contact=case.do_not_contact,
        deadlines={k: v.isoformat() for k, v in case.deadlines.items()},
    )
    await repository.add_report_to_case(uow.session, case_id, event.id, report.reporter.institution,
                                        list(case.categories), uow.now)
    await repository.flag_duplicates(uow.session, case_id, duplicates)
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
    ), key=case_id)
    reporter = report.reporter.institution
    if not _takes_part(reporter, case.lead, case.informed):
        return case_id, reply(uow, message, accepted=True)
    known = sorted(row.case_id for row, _ in lookalikes if _takes_part(reporter, row.lead, row.informed))
    return case_id, reply(uow, message, accepted=True, key=case_id, case_id=case_id, urgency=case.urgency,
                          informed=[case.lead, *case.informed], possible_duplicate_of=known or None)


async def _possible_duplicates(uow: UnitOfWork, case: NewCase,
                               vault: IdentityVault) -> list[tuple[sa.Row, float]]:
    """Open cases that may be this child under another spelling, with their scores; a
    person decides."""
    found: list[tuple[sa.Row, float]] = []
    for row in await repository.lookalikes(uow.session, case.county, case.uat_siruta,
                                           case.described.birth_year, case.child_ref):
        known = vault.open(Sealed(row.key_id, row.nonce, row.ciphertext), row.child_ref)
        birth = known.get("birth_date")
        score = likely_same_child(case.described, Described(
            known.get("given_name"), known.get("family_name"),
            date.fromisoformat(birth) if birth else None, row.birth_year, row.uat_siruta, row.county))
        if score is not None:
            found.append((row, round(score, 3)))
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
    await _record(uow, message, "rejected", answer, reason=code)


async def _record(uow: UnitOfWork, message: Message, outcome: str, answer: dict[str, Any],
                  reason: str | None = None, case_id: str | None = None) -> None:
    await repository.record_answer(
        uow.session, uow.replaying, message_key=key_by_sender(message), event_id=message.header("ce_id"),
        event_type=message.header("ce_type"), sender=sender_of(message), received_at=uow.now,
        outcome=outcome, reason_code=reason, case_id=case_id, answer=answer,
    )


async def stats(session) -> dict:
    count = sa.func.count
    total, outcomes, accepted, rejected = (await session.execute(sa.select(
        count(), count(reports.c.outcome), count().filter(reports.c.outcome == "accepted"),
        count().filter(reports.c.outcome == "rejected"),
    ).select_from(reports))).one()
    opened = await session.scalar(sa.select(count()).select_from(cases))
    return {"reports": total, "outcomes": outcomes, "accepted": accepted, "rejected": rejected,
            "cases": opened}
