"""Notification's use cases: one function per event it handles."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert

from contracts.access import visible_categories
from contracts.events import (
    AccessRecorded,
    CaseNotification,
    CaseOpened,
    CaseReportAdded,
    CaseRestricted,
    EventType,
    ReferralAccepted,
    ReferralOverdue,
    ReferralRequested,
    ReferralTransitioned,
)
from contracts.reference import (
    NeedToKnow,
    ReferralReason,
    delivery_topic,
    institutions,
    need_to_know,
    referral_reasons,
)
from contracts.rights import serves_a_right
from runtime import restrictions
from runtime.access import purpose_named
from runtime.cloudevents import CloudEvent, EnvelopeError
from runtime.db import any_of
from runtime.inbox import Message, UnitOfWork, dead_letter, failure_detail
from runtime.log import get_logger
from runtime.signing import SigningKey
from services.notification.adapters import alerting, people
from services.notification.adapters import preferences as preference_store
from services.notification.adapters.deliveries import webhook_deliveries
from services.notification.adapters.tables import (
    alerts,
    facts,
    inbox_entries,
    people_deliveries,
    referral_owners,
)
from services.notification.channels.people import PeopleChannels
from services.notification.channels.webhook import enqueue_events
from services.notification.domain import dispatch, notices
from services.notification.domain.messages import Labelled, summarise
from services.notification.domain.notices import Notice
from services.notification.domain.recipients import Recipients

SERVICE = "notification"
log = get_logger("notification")


@dataclass(frozen=True)
class Config:
    """What the handlers need besides the message: labels, whom to tell and how."""

    labels: Mapping[str, Labelled]
    recipients: Recipients
    channels: PeopleChannels
    network_key: SigningKey | None
    # institution -> the DGASPC of its county, whose coordinators get escalated alerts
    county_dgaspc: Mapping[str, str] = field(default_factory=lambda: county_dgaspcs())
    rules: NeedToKnow = field(default_factory=need_to_know)  # for the categories messages never name
    # How often one person may be paged for P0 alerts (PUNTE_P0_PAGES_PER_PERSON, ..._WINDOW_SECONDS).
    page_cap: dispatch.PageCap = field(default_factory=dispatch.PageCap)
    # The reason codes a referral step may carry, and their labels (referral-reasons.yaml).
    reasons: Mapping[str, ReferralReason] = field(default_factory=referral_reasons)


def county_dgaspcs() -> dict[str, str]:
    """Every institution's county DGASPC, where the county has one in the network."""
    dgaspcs = {inst.county: inst.id for inst in institutions().values() if inst.kind == "DGASPC"}
    return {inst.id: dgaspcs[inst.county] for inst in institutions().values() if inst.county in dgaspcs}


class UnknownReferral(LookupError):
    """An acceptance for a referral this service never saw requested."""


async def notify(uow: UnitOfWork, message: Message, config: Config) -> None:
    """A case or referral event becomes inbox entries and deliveries to those it concerns."""
    pending = Pending()
    await take(uow, message, config, pending)
    await pending.write(uow, config)


@dataclass
class Pending:
    """What the messages of a consumed batch told so far, not written yet: the batch's
    facts, entries, events and messages to people are written together (decision 0033).
    Before a message that reads what earlier ones wrote, what is pending is written."""

    facts: list[dict[str, Any]] = field(default_factory=list)
    found: list[tuple[CloudEvent, list[Notice]]] = field(default_factory=list)

    async def write(self, uow: UnitOfWork, config: Config) -> None:
        rows, self.facts = self.facts, []
        found, self.found = self.found, []
        if rows:
            # A case's or referral's whole facts, for the notices that follow it.
            await uow.session.execute(insert(facts).on_conflict_do_nothing(index_elements=["subject_id"]), rows)
        if found:
            await _deliver_all(uow, found, config)


async def notify_many(uow: UnitOfWork, messages: list[Message], config: Config) -> None:
    """``notify`` for a consumed batch, in order, written together."""
    pending = Pending()
    for message in messages:
        await take(uow, message, config, pending)
    await pending.write(uow, config)


async def take(uow: UnitOfWork, message: Message, config: Config, pending: Pending) -> None:
    """What ``message`` tells whom, added to ``pending``."""
    try:
        event = message.event
        if event.type == EventType.CASE_OPENED.value:
            case = CaseOpened.model_validate(event.data)
            pending.facts.append(_fact(uow, case.case_id, case.case_id, case.urgency.value, case.categories,
                                       case.do_not_contact, case.lead))
            found = notices.case_opened(case)
        elif event.type == EventType.CASE_REPORT_ADDED.value:
            found = notices.report_added(CaseReportAdded.model_validate(event.data))
        elif event.type == EventType.REFERRAL_REQUESTED.value:
            referral = ReferralRequested.model_validate(event.data)
            pending.facts.append(_fact(uow, referral.referral_id, referral.case_id, referral.urgency.value,
                                       referral.categories, referral.do_not_contact, referral.to))
            found = notices.referral_requested(referral)
        elif event.type == EventType.REFERRAL_TRANSITIONED.value:
            step = ReferralTransitioned.model_validate(event.data)
            await pending.write(uow, config)
            await _follow_owner(uow, step)
            _, categories, do_not_contact = await _referral_facts(uow, step.referral_id, step.case_id)
            found = notices.referral_transitioned(step, categories, do_not_contact, config.reasons)
        elif event.type == EventType.REFERRAL_OVERDUE.value:
            late = ReferralOverdue.model_validate(event.data)
            await pending.write(uow, config)
            _, categories, do_not_contact = await _referral_facts(uow, late.referral_id, late.case_id)
            found = notices.referral_overdue(late, categories, do_not_contact)
        elif event.type == EventType.ACCESS.value:
            access = AccessRecorded.model_validate(event.data)
            await pending.write(uow, config)
            lead = await _lead_of(uow, access.case_id) if access.case_id else None
            if lead is None:
                return  # not a case this service has heard of (or an auditor's search)
            urgency, categories, _ = await _facts(uow, facts.c.case_id == access.case_id)
            found = (notices.sealed_value_opened(access, lead, urgency, categories) if access.break_glass
                     else notices.case_accessed(access, lead, urgency, categories))
        elif event.type == EventType.REFERRAL_ACCEPTED.value:
            accepted = ReferralAccepted.model_validate(event.data)
            await pending.write(uow, config)
            urgency, categories, _ = await _referral_facts(uow, accepted.referral_id, accepted.case_id)
            found = notices.referral_accepted(accepted, urgency, categories)
        elif event.type == EventType.CASE_RESTRICTED.value:
            await pending.write(uow, config)  # what came before the restriction was told then
            await restrictions.follow(uow.session, CaseRestricted.model_validate(event.data))
            return  # told to nobody: the restriction itself is the lead's own decision
        else:
            return  # other events on these topics are not for people
    except EnvelopeError as exc:
        # Internal topics carry only our services' events; an unreadable one is a fault
        # someone must see, not something to retry.
        dead_letter(uow, message, SERVICE, exc.code, exc.detail)
        return
    except ValidationError as exc:
        dead_letter(uow, message, SERVICE, "SCHEMA_VIOLATION", failure_detail(exc))
        return
    if found:
        pending.found.append((event, found))


def _fact(uow: UnitOfWork, subject_id: str, case_id: str, urgency: str, categories: list[str],
          do_not_contact: bool, lead: str) -> dict[str, Any]:
    return dict(subject_id=subject_id, case_id=case_id, urgency=urgency, categories=list(categories),
                do_not_contact=do_not_contact, lead=lead, created_at=uow.now)


async def _follow_owner(uow: UnitOfWork, step: ReferralTransitioned) -> None:
    """Remember who holds a referral, so its updates reach that person."""
    if step.owner:
        await uow.session.execute(insert(referral_owners).values(
            referral_id=step.referral_id, owner=step.owner,
        ).on_conflict_do_update(index_elements=["referral_id"], set_={"owner": step.owner}))


@dataclass(frozen=True)
class _Entry:
    """One notice as it is stored in the recipient's inbox and sent on its delivery topic."""

    notification_id: str
    notice: Notice
    row: dict[str, Any]
    delivered: CloudEvent


def _entry(event: CloudEvent, notice: Notice, config: Config, now: datetime, source: str) -> _Entry:
    notification_id = notices.notification_id(event.source, event.id, notice.recipient)
    # Need to know (the one rule, failing closed): what the recipient is not to know of is
    # left out of everything it is sent and of what is stored for it.
    notice = replace(notice, categories=visible_categories(notice.recipient, notice.categories))
    purpose = purpose_named(notice.purpose) if notice.purpose is not None else None
    reason = config.reasons.get(notice.reason) if notice.reason is not None else None
    summary = summarise(notice.kind, notice.urgency, notice.categories, notice.case_id, config.labels,
                        notice.do_not_contact, notice.detail, purpose=purpose, reason=reason,
                        note_added=notice.note_id is not None)
    mail = summarise(notice.kind, notice.urgency, notice.categories, notice.case_id, config.labels,
                     notice.do_not_contact, notice.detail, protected=config.rules.protected_in_messages,
                     purpose=purpose, reason=reason, note_added=notice.note_id is not None)
    row = dict(
        notification_id=notification_id, institution=notice.recipient, case_id=notice.case_id,
        referral_id=notice.referral_id, kind=notice.kind, urgency=notice.urgency,
        categories=list(notice.categories), summary_ro=summary.ro, summary_en=summary.en,
        created_at=now, do_not_contact=notice.do_not_contact, deadline=notice.deadline,
        mail_summary_ro=mail.ro, mail_summary_en=mail.en,
    )
    delivery = CaseNotification(
        notification_id=notification_id, case_id=notice.case_id, referral_id=notice.referral_id,
        kind=notice.kind, urgency=notice.urgency, categories=list(notice.categories),
        recipient=notice.recipient, summary_ro=summary.ro, summary_en=summary.en,
        do_not_contact=notice.do_not_contact,
        state=notice.detail if notice.kind.startswith("referral-") and notice.kind != "referral-overdue" else None,
        # Free text never rides a notification: a note is told by its id, a reason by its code.
        outcome=notice.outcome, note=None, reason=notice.reason, forwarded_to=notice.forwarded_to,
        note_id=notice.note_id,
    )
    # The notification id doubles as the event id, so the recipient can deduplicate too.
    delivered = CloudEvent.new(
        EventType.CASE_NOTIFICATION.value, source, delivery.model_dump(mode="json"),
        subject=notice.case_id, id=notification_id,
    )
    return _Entry(notification_id, notice, row, delivered)


async def _deliver_all(uow: UnitOfWork, found: list[tuple[CloudEvent, list[Notice]]], config: Config) -> None:
    """Store, send and tell people the notices of several events, each table written once."""
    restricted = await restrictions.restricted_among(uow.session, {told[0].case_id for _, told in found})
    entries: list[_Entry] = []
    for event, told in found:
        if told[0].case_id in restricted:
            # GDPR art. 18: nothing is sent about a restricted case, but the lead is told of the
            # person's rights exercised on it (exports, rectifications, the restriction's own calls).
            told = [n for n in told if n.kind == "case-accessed" and serves_a_right(n.purpose)]
        entries += [_entry(event, notice, config, uow.now, uow.source) for notice in told]
    if not entries:
        return
    inserted = set((await uow.session.execute(
        insert(inbox_entries).on_conflict_do_nothing(index_elements=["notification_id"])
        .returning(inbox_entries.c.notification_id), [e.row for e in entries])).scalars())
    # One not inserted was delivered already: the event came round again past the inbox.
    new = [e for e in entries if e.notification_id in inserted]
    for e in new:
        uow.outbox.emit(delivery_topic(e.notice.recipient), e.delivered, key=e.notice.case_id)
    await _tell_people(uow, new, config)
    hooked = [(e.notice.recipient, inst.webhook, e.delivered) for e in new
              if (inst := config.recipients.of(e.notice.recipient)) is not None and inst.webhook]
    if hooked and config.network_key is None:
        log.warning("webhooks not sent: the network has no signing key", institutions=sorted({i for i, _, _ in hooked}))
    elif hooked:
        await enqueue_events(uow.session, config.network_key, hooked, uow.now)


async def _tell_people(uow: UnitOfWork, entries: list[_Entry], config: Config) -> None:
    """Queue the e-mails and SMS of each notice's dispatch plan, and open an alert for a P0
    that must be acknowledged: owners, preferences and pages read once for all of them."""
    recipients = config.recipients
    entries = [e for e in entries if recipients.of(e.notice.recipient) is not None]
    if not entries:
        return
    referral_ids = {e.notice.referral_id for e in entries if e.notice.referral_id}
    owners = dict((await uow.session.execute(
        sa.select(referral_owners.c.referral_id, referral_owners.c.owner)
        .where(any_of(referral_owners.c.referral_id, sorted(referral_ids))))).all()) if referral_ids else {}
    members = {person for e in entries
               for person in recipients.members(e.notice.recipient, "case-manager", "supervisor", "coordinator")}
    chosen = await preference_store.of(uow.session, members)
    plans = [(e, dispatch.plan(e.notice, recipients, uow.now, owner=owners.get(e.notice.referral_id),
                               preferences=chosen, available=config.channels.available)) for e in entries]
    paged = {m.person for _, plan in plans for m in plan.messages if m.purpose == "alert"}
    cap = config.page_cap
    pages = dict(await people.pages_since(uow.session, paged, cap.window_start(uow.now))) if paged else {}
    queued: list[tuple[str, str, tuple[dispatch.Outgoing, ...]]] = []
    for e, plan in plans:
        paging = dispatch.limit_pages(plan.messages, pages, cap, uow.now)
        # A later notice of the batch counts these pages, as it would have read them back.
        for person in {m.person for m in paging.sent if m.purpose == "alert"}:
            pages[person] = pages.get(person, 0) + 1
        queued.append((e.notification_id, e.notice.recipient, paging.sent + paging.held))
    await people.enqueue_many(uow.session, queued, uow.now)
    await alerting.open_alerts(uow.session, [
        (e.notification_id, e.notice.recipient,
         uow.now + timedelta(minutes=recipients.institutions[e.notice.recipient].ack_minutes))
        for e, plan in plans if plan.alert], uow.now)


async def fire_due_alerts(session, config: Config, now: datetime, limit: int = 100) -> int:
    """Re-send or escalate every unacknowledged alert whose time has come, in one
    transaction (begun here). A level with nobody to tell is skipped. The number handled."""
    recipients = config.recipients
    async with session.begin():
        due = await alerting.due(session, now, limit)
        for alert in due:
            inst = recipients.of(alert.institution)
            targets_at = partial(dispatch.alert_targets, institution=alert.institution, recipients=recipients,
                                 county_dgaspc=config.county_dgaspc, now=now)
            step = dispatch.next_alert_step(alert.level, alert.round, inst.resends, targets_at) if inst else None
            if step is None or inst is None:
                log.warning("alert unacknowledged and nobody left to tell", notification_id=alert.notification_id)
                await alerting.stop(session, alert.notification_id)
                continue
            messages = [dispatch.Outgoing(person, channel, address, "alert", now)
                        for person in step.targets
                        for channel, address in dispatch.reachable(recipients, person, config.channels.available)]
            paging = await _limit_pages(session, messages, config.page_cap, now)
            await people.enqueue(session, alert.notification_id, alert.institution, paging.sent, now,
                                 round=alert.sends + 1)
            # Held back: one digest line per alert and person, however often it comes round.
            await people.enqueue(session, alert.notification_id, alert.institution, paging.held, now)
            await alerting.advance(session, alert.notification_id, step.level, step.round,
                                   now + timedelta(minutes=inst.ack_minutes))
            log.info("alert re-sent" if step.level == alert.level else "alert escalated",
                     notification_id=alert.notification_id, level=step.level, people=len(step.targets))
        return len(due)


async def _limit_pages(session, messages: Sequence[dispatch.Outgoing], cap: dispatch.PageCap,
                       now: datetime) -> dispatch.Paging:
    """``messages`` with the pages of people over the cap held back (dispatch.limit_pages)."""
    paged = {m.person for m in messages if m.purpose == "alert"}
    if not paged:
        return dispatch.Paging(tuple(messages), ())
    pages = await people.pages_since(session, paged, cap.window_start(now))
    return dispatch.limit_pages(messages, pages, cap, now)


async def _lead_of(uow: UnitOfWork, case_id: str) -> str | None:
    """The institution a case was referred to first: its lead."""
    return (await uow.session.execute(
        sa.select(facts.c.lead).where(facts.c.case_id == case_id, facts.c.lead.is_not(None))
        .order_by(facts.c.created_at).limit(1)
    )).scalar_one_or_none()


async def _referral_facts(uow: UnitOfWork, referral_id: str, case_id: str) -> tuple[str, tuple[str, ...], bool]:
    """Urgency, categories and the do-not-contact flag of a referral, from its request (same
    topic and key, so it was handled first), else from what is known of the case."""
    return await _facts(uow, facts.c.subject_id == referral_id, facts.c.case_id == case_id)


async def _facts(uow: UnitOfWork, *wheres: Any) -> tuple[str, tuple[str, ...], bool]:
    """From the earliest facts matching the first condition that matches any."""
    for where in wheres:
        row = (await uow.session.execute(
            sa.select(facts.c.urgency, facts.c.categories, facts.c.do_not_contact)
            .where(where).order_by(facts.c.created_at).limit(1)
        )).first()
        if row is not None:
            return row.urgency, tuple(row.categories), row.do_not_contact
    # Raised, so the message is retried and then dead-lettered with its reason.
    raise UnknownReferral("no earlier notice about this referral or case")


async def stats(session) -> dict:
    count = lambda *where: session.scalar(  # noqa: E731
        sa.select(sa.func.count()).select_from(inbox_entries).where(*where))
    return {
        "notifications": await count(),
        "unread": await count(inbox_entries.c.read_at.is_(None)),
        "acknowledged": await count(inbox_entries.c.acknowledged_at.is_not(None)),
        "messages_to_people": dict((await session.execute(
            sa.select(people_deliveries.c.status, sa.func.count()).group_by(people_deliveries.c.status))).all()),
        "alerts_unacknowledged": await session.scalar(
            sa.select(sa.func.count()).select_from(alerts).where(alerts.c.acknowledged_at.is_(None))),
        "webhooks": dict((await session.execute(
            sa.select(webhook_deliveries.c.status, sa.func.count()).group_by(webhook_deliveries.c.status))).all()),
    }
