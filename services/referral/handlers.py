"""Referral's use cases."""
from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from contracts.events import CaseOpened, EventType, ReferralAccept, ReferralAccepted, ReferralRequested
from runtime.cloudevents import CloudEvent, decode
from runtime.inbox import Message, UnitOfWork, key_by_event_id
from runtime.ingress import Refusal, Window, receive, reply, sender_of
from runtime.signing import Keyring
from services.referral.adapters.tables import commands, referrals
from services.referral.domain.referral import Referral, ReferralRefused

SERVICE = "referral"
REFERRALS_TOPIC = "punte.referrals"


async def open_referral(uow: UnitOfWork, message: Message) -> None:
    """A new case is referred to its lead institution."""
    event = decode(message.headers, message.value)
    if event.type != EventType.CASE_OPENED.value:
        return
    case = CaseOpened.model_validate(event.data)
    referral_id = f"ref-{uuid.uuid5(uuid.NAMESPACE_URL, case.case_id).hex[:16]}"
    inserted = await uow.session.execute(
        pg_insert(referrals).values(
            referral_id=referral_id, case_id=case.case_id, referrer=case.reporter.institution,
            to_institution=case.lead, urgency=case.urgency.value, categories=case.categories,
            state="requested", requested_at=uow.now,
        ).on_conflict_do_nothing().returning(referrals.c.referral_id)
    )
    if inserted.first() is None:
        return
    requested = ReferralRequested(
        referral_id=referral_id, case_id=case.case_id, referrer=case.reporter.institution,
        to=case.lead, urgency=case.urgency, categories=case.categories, requested_at=uow.now,
        do_not_contact=case.do_not_contact,
    )
    uow.outbox.emit(REFERRALS_TOPIC, CloudEvent.new(
        EventType.REFERRAL_REQUESTED.value, uow.source, requested.model_dump(mode="json"),
        subject=case.case_id), key=case.case_id)


async def accept_referral(uow: UnitOfWork, message: Message, keyring: Keyring,
                          window: Window) -> None:
    """The receiving institution accepts a referral; the referrer is told through events."""
    event = receive(uow, message, keyring, SERVICE, window)
    if isinstance(event, Refusal):
        await _record(uow, message, "rejected", event.code)
        return
    command = ReferralAccept.model_validate(event.data)
    row = (await uow.session.execute(
        sa.select(referrals).where(referrals.c.referral_id == command.referral_id).with_for_update()
    )).first()
    try:
        if row is None:
            raise ReferralRefused("UNKNOWN_REFERRAL", f"no referral {command.referral_id}")
        referral = Referral(row.referral_id, row.case_id, row.referrer, row.to_institution,
                            row.urgency, row.state, row.accepted_at)
        accepted = referral.accept(by=sender_of(message) or "", at=uow.now)
    except ReferralRefused as exc:
        reply(uow, message, accepted=False, code=exc.code, detail=exc.detail,
              referral_id=command.referral_id)
        await _record(uow, message, "rejected", exc.code)
        return
    await uow.session.execute(
        sa.update(referrals).where(referrals.c.referral_id == accepted.referral_id)
        .values(state=accepted.state, accepted_at=accepted.accepted_at)
    )
    payload = ReferralAccepted(
        referral_id=accepted.referral_id, case_id=accepted.case_id, referrer=accepted.referrer,
        to=accepted.to, accepted_at=uow.now, note=command.note,
    )
    uow.outbox.emit(REFERRALS_TOPIC, CloudEvent.new(
        EventType.REFERRAL_ACCEPTED.value, uow.source, payload.model_dump(mode="json"),
        subject=accepted.case_id), key=accepted.case_id)
    reply(uow, message, accepted=True, key=accepted.case_id, case_id=accepted.case_id,
          referral_id=accepted.referral_id)
    await _record(uow, message, "accepted")


async def record_failure(uow: UnitOfWork, message: Message, code: str) -> None:
    reply(uow, message, accepted=False, code=code)
    await _record(uow, message, "rejected", code)


async def _record(uow: UnitOfWork, message: Message, outcome: str, reason: str | None = None) -> None:
    await uow.session.execute(sa.insert(commands).values(
        message_key=key_by_event_id(message), event_type=message.header("ce_type"),
        sender=sender_of(message), received_at=uow.now, outcome=outcome, reason_code=reason,
    ))


async def stats(session) -> dict:
    async def count(table, *where) -> int:
        return await session.scalar(sa.select(sa.func.count()).select_from(table).where(*where))

    return {
        "referrals": await count(referrals),
        "accepted": await count(referrals, referrals.c.state == "accepted"),
        "commands": await count(commands),
        "outcomes": await count(commands),
    }
