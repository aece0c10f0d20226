"""Intake's retention use cases: a case its lead closed in referral
(ro.punte.case.closed.v1) takes no new report, and its erasure is scheduled at closed_at +
the closed-case period (a reopened case is open again, its erasure cancelled); the purge
job erases what is due: closed cases (the case, its reports' answers, the identity versions
they recorded, see domain/closure.py), refused reports by the unconfirmed-report rule, and
the runtime's rows (runtime.retention.purge)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import CaseClosed, CaseReopened, EventType
from contracts.reference import RetentionSchedule
from runtime import retention
from runtime.data_keys import DataKeys
from runtime.inbox import Message, UnitOfWork
from services.intake.adapters import retention as rows
from services.intake.domain.closure import identity_versions_to_erase

CLOSED_CASE, UNCONFIRMED = "closed-case", "unconfirmed-report"


def report_scope(report_id: str) -> str:
    """The data key scope of what is sealed about one report."""
    return f"report:{report_id}"


async def follow_closure(uow: UnitOfWork, message: Message, schedule: RetentionSchedule) -> None:
    """A case its lead closed or reopened (punte.referrals); other events are not intake's."""
    event = message.event
    if event.type == EventType.CASE_CLOSED.value:
        closed = CaseClosed.model_validate(event.data)
        if await rows.close(uow.session, closed.case_id, at=closed.closed_at, by=closed.closed_by,
                            reason=closed.reason):
            await retention.schedule(uow.session, [retention.case_scope(closed.case_id)], CLOSED_CASE,
                                     retention.due_at(schedule, CLOSED_CASE, closed.closed_at))
    elif event.type == EventType.CASE_REOPENED.value:
        reopened = CaseReopened.model_validate(event.data)
        if await rows.reopen(uow.session, reopened.case_id):
            await retention.cancel(uow.session, [retention.case_scope(reopened.case_id)])


async def erase_cases(session: AsyncSession, due: Sequence[retention.Due]) -> None:
    """What intake keeps of each closed case due (``on_erase`` of the purge job)."""
    now = datetime.now(timezone.utc)
    for case_id in retention.cases_in(due):
        child_ref = await rows.child_of(session, case_id)
        if child_ref is None:
            continue  # erased already
        report_ids = await rows.report_ids_of(session, case_id)
        another = await rows.other_cases_of(session, child_ref, case_id)
        await rows.delete_identity_versions(session, identity_versions_to_erase(
            await rows.identity_versions_of(session, child_ref), set(report_ids), another))
        await rows.delete_case(session, case_id, report_ids)
        if not another:
            await rows.delete_household_links(session, child_ref)
        await DataKeys.erase(session, [report_scope(r) for r in report_ids], CLOSED_CASE, now)


async def purge_refused(session: AsyncSession, schedule: RetentionSchedule, now: datetime) -> int:
    """Answers to refused reports past the unconfirmed-report rule, and whatever is sealed
    under their reports' scopes."""
    refused = await rows.delete_refused(session, now - timedelta(days=schedule.rule(UNCONFIRMED).days))
    await DataKeys.erase(session, [report_scope(r) for r in refused], UNCONFIRMED, now)
    return len(refused)


async def purge(session: AsyncSession, data_keys: DataKeys, schedule: RetentionSchedule, now: datetime) -> int:
    """One pass of intake's purge job, in the caller's transaction."""
    done = await retention.purge(session, data_keys, schedule, now, erase_cases)
    return done + await purge_refused(session, schedule, now)
