"""Notification's retention use cases: a case its lead closed (ro.punte.case.closed.v1 on
punte.referrals) is erased here at closed_at + the closed-case period (a reopened case's
erasure is cancelled); the purge job erases what is due: the notices of closed cases with
their deliveries, the webhook delivery log and the e-mail/SMS log by their rules, and the
runtime's rows (runtime.retention.purge)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import CaseClosed, CaseReopened, EventType
from contracts.reference import RetentionSchedule
from runtime import retention
from runtime.data_keys import DataKeys
from runtime.inbox import Message, UnitOfWork
from services.notification.adapters import retention as rows

CLOSED_CASE = "closed-case"
CLOSURES = frozenset({EventType.CASE_CLOSED.value, EventType.CASE_REOPENED.value})


async def follow_closure(uow: UnitOfWork, message: Message, schedule: RetentionSchedule) -> None:
    """Schedule a closed case's erasure; cancel a reopened one's."""
    event = message.event
    if event.type == EventType.CASE_CLOSED.value:
        closed = CaseClosed.model_validate(event.data)
        await retention.schedule(uow.session, [retention.case_scope(closed.case_id)], CLOSED_CASE,
                                 retention.due_at(schedule, CLOSED_CASE, closed.closed_at))
    elif event.type == EventType.CASE_REOPENED.value:
        reopened = CaseReopened.model_validate(event.data)
        await retention.cancel(uow.session, [retention.case_scope(reopened.case_id)])


async def erase_cases(session: AsyncSession, due: Sequence[retention.Due]) -> None:
    """What notification keeps of each closed case due (``on_erase`` of the purge job)."""
    await rows.delete_cases(session, retention.cases_in(due))


async def purge_logs(session: AsyncSession, schedule: RetentionSchedule, now: datetime) -> int:
    """The delivery logs past their rules (webhook-delivery-log, people-message-log)."""
    webhooks = await rows.delete_webhook_log(session, now - timedelta(days=schedule.rule("webhook-delivery-log").days))
    people = await rows.delete_people_log(session, now - timedelta(days=schedule.rule("people-message-log").days))
    return webhooks + people


async def purge(session: AsyncSession, data_keys: DataKeys, schedule: RetentionSchedule, now: datetime) -> int:
    """One pass of notification's purge job, in the caller's transaction."""
    done = await retention.purge(session, data_keys, schedule, now, erase_cases)
    return done + await purge_logs(session, schedule, now)
