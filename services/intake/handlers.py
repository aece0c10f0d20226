"""Intake's use cases: one function per message it handles."""
from __future__ import annotations

import uuid

import sqlalchemy as sa

from contracts.events import CaseOpened, EventType, Reporter, ReportSubmitted
from contracts.refusals import Refused
from runtime.cloudevents import CloudEvent
from runtime.inbox import Message, UnitOfWork, key_by_event_id
from runtime.ingress import receive, reply, sender_of
from runtime.signing import Keyring
from services.intake.adapters.tables import cases, reports
from services.intake.domain.cases import Rules, assess
from services.intake.domain.errors import ReportRejected

SERVICE = "intake"
CASES_TOPIC = "punte.cases"


async def submit_report(uow: UnitOfWork, message: Message, keyring: Keyring, rules: Rules) -> None:
    """A report from an institution becomes a routed case, or a rejection with a reason."""
    event = receive(uow, message, keyring, SERVICE)
    if isinstance(event, Refused):
        await _record(uow, message, "rejected", reason=event.code)
        return
    try:
        if event.type != EventType.REPORT_SUBMITTED.value:
            raise ReportRejected("UNKNOWN_EVENT_TYPE", f"intake does not handle {event.type}")
        report = ReportSubmitted.model_validate(event.data)
        if report.reporter.institution != sender_of(message):
            raise ReportRejected("SOURCE_MISMATCH", "reporter.institution is not the sender")
        case = assess(report, rules)
    except ReportRejected as exc:
        reply(uow, message, accepted=False, code=exc.code, detail=exc.detail)
        await _record(uow, message, "rejected", reason=exc.code)
        return

    case_id = f"case-{uuid.uuid4().hex[:16]}"
    await uow.session.execute(sa.insert(cases).values(
        case_id=case_id, child_ref=case.child_ref, uat_siruta=case.uat_siruta,
        categories=list(case.categories), urgency=case.urgency, lead=case.lead,
        informed=list(case.informed), report_id=event.id, reporter=report.reporter.institution,
        opened_at=uow.now,
    ))
    opened = CaseOpened(
        case_id=case_id, child_ref=case.child_ref, uat_siruta=case.uat_siruta,
        categories=list(case.categories), urgency=case.urgency, lead=case.lead,
        informed=list(case.informed), report_id=event.id,
        reporter=Reporter(institution=report.reporter.institution, role=report.reporter.role),
        received_at=uow.now,
    )
    uow.outbox.emit(CASES_TOPIC, CloudEvent.new(
        EventType.CASE_OPENED.value, uow.source, opened.model_dump(mode="json"), subject=case_id,
    ), key=case_id)
    reply(uow, message, accepted=True, key=case_id, case_id=case_id, urgency=case.urgency,
          informed=[case.lead, *case.informed])
    await _record(uow, message, "accepted", case_id=case_id)


async def record_failure(uow: UnitOfWork, message: Message, code: str) -> None:
    """A message whose handling failed still counts, with its rejection."""
    reply(uow, message, accepted=False, code=code)
    await _record(uow, message, "rejected", reason=code)


async def _record(uow: UnitOfWork, message: Message, outcome: str, reason: str | None = None,
                  case_id: str | None = None) -> None:
    await uow.session.execute(sa.insert(reports).values(
        message_key=key_by_event_id(message), event_id=message.header("ce_id"),
        event_type=message.header("ce_type"), sender=sender_of(message), received_at=uow.now,
        outcome=outcome, reason_code=reason, case_id=case_id,
    ))


async def stats(session) -> dict:
    count = lambda table, *where: session.scalar(  # noqa: E731
        sa.select(sa.func.count()).select_from(table).where(*where))
    return {
        "reports": await count(reports),
        "outcomes": await count(reports, reports.c.outcome.isnot(None)),
        "accepted": await count(reports, reports.c.outcome == "accepted"),
        "rejected": await count(reports, reports.c.outcome == "rejected"),
        "cases": await count(cases),
    }
