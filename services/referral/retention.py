"""Referral's retention use cases: the lead closes a case once its plan is done, with a
reason from the catalogue, and every service hears ro.punte.case.closed.v1 (and
ro.punte.case.reopened.v1 when the lead reopens it); referral schedules the case's erasure
at closed_at + the closed-case period (reopening cancels it). The purge job erases what is
due: the case's data key (its sealed notes) and the rows referral keeps of it, and the
runtime's rows (runtime.retention.purge)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import reference
from contracts.events import CaseClosed, CaseReopened, EventType
from contracts.reference import RetentionSchedule
from contracts.refusals import Refused
from runtime import retention
from runtime.cloudevents import CloudEvent
from runtime.data_keys import DataKeys
from runtime.inbox import Message, UnitOfWork
from services.referral.adapters import retention as rows

REFERRALS_TOPIC = "punte.referrals"
CLOSED_CASE = "closed-case"
DEFAULT_REASON = "goals-met"


async def close_case(uow: UnitOfWork, case: sa.Row, closed_by: str, reason: str,
                     schedule: RetentionSchedule) -> None:
    """Announce the closure of an open case (the caller marks it closed) and schedule its
    erasure; a reason outside the catalogue or a case closed already is refused."""
    if reason not in reference.case_closure_reasons():
        raise Refused("UNKNOWN_CLOSURE_REASON", "reason: not a code of case-closure-reasons.yaml")
    if case.status != "open":
        raise Refused("CASE_ALREADY_CLOSED", "the case was closed before")
    closed = CaseClosed(case_id=case.case_id, closed_at=uow.now, closed_by=closed_by, reason=reason,
                        report_ids=await rows.report_ids_of(uow.session, case.case_id))
    _emit(uow, EventType.CASE_CLOSED, closed.model_dump(mode="json"), case.case_id)
    await retention.schedule(uow.session, [retention.case_scope(case.case_id)], CLOSED_CASE,
                             retention.due_at(schedule, CLOSED_CASE, uow.now))


async def reopen_case(uow: UnitOfWork, case: sa.Row, reopened_by: str) -> None:
    """Announce that a closed case is open again, and cancel its erasure."""
    if case.status != "closed":
        raise Refused("CASE_NOT_CLOSED", "the case is open")
    reopened = CaseReopened(case_id=case.case_id, reopened_at=uow.now, reopened_by=reopened_by)
    _emit(uow, EventType.CASE_REOPENED, reopened.model_dump(mode="json"), case.case_id)
    await retention.cancel(uow.session, [retention.case_scope(case.case_id)])


def _emit(uow: UnitOfWork, type_: EventType, data: dict, case_id: str) -> None:
    uow.outbox.emit(REFERRALS_TOPIC, CloudEvent.new(type_.value, uow.source, data, subject=case_id), key=case_id)


async def note_report(uow: UnitOfWork, message: Message) -> None:
    """Keep which reports a case holds (case.opened, case.report-added), for its closure."""
    event = message.event
    if event.type in (EventType.CASE_OPENED.value, EventType.CASE_REPORT_ADDED.value):
        await rows.add_report(uow.session, event.data["case_id"], event.data["report_id"])


async def note_reports(uow: UnitOfWork, messages: list[Message]) -> None:
    """``note_report`` for a consumed batch, in one insert."""
    await rows.add_reports(uow.session, [
        (m.event.data["case_id"], m.event.data["report_id"]) for m in messages
        if m.event.type in (EventType.CASE_OPENED.value, EventType.CASE_REPORT_ADDED.value)])


async def erase_cases(session: AsyncSession, due: Sequence[retention.Due]) -> None:
    """The rows referral keeps of each closed case due (``on_erase`` of the purge job)."""
    await rows.delete_cases(session, retention.cases_in(due))


async def purge(session: AsyncSession, data_keys: DataKeys, schedule: RetentionSchedule, now: datetime) -> int:
    """One pass of referral's purge job, in the caller's transaction."""
    return await retention.purge(session, data_keys, schedule, now, erase_cases)
