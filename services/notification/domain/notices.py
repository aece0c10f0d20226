"""Who is told about what: the notices a case or referral event gives rise to.

The lead of a case hears of it through the referral it is asked to take, so a new case
only notifies the institutions informed of it."""
from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from contracts.events import (
    AccessRecorded,
    CaseOpened,
    CaseReportAdded,
    ReferralAccepted,
    ReferralOverdue,
    ReferralRequested,
    ReferralTransitioned,
)
from contracts.rights import serves_a_right

# Fixed namespace: the same event and recipient always give the same notification id.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://punte.ro/notification")


@dataclass(frozen=True)
class Notice:
    recipient: str
    kind: str
    case_id: str
    referral_id: str | None
    urgency: str
    categories: tuple[str, ...]
    do_not_contact: bool = False
    detail: str | None = None  # the referral's new state, or the missed step
    outcome: str | None = None
    note_id: str | None = None  # a note was added to the case file: its id, never its text
    reason: str | None = None  # a code of referral-reasons.yaml, never free text
    forwarded_to: str | None = None
    deadline: datetime | None = None  # when the next step is due
    uat: int | None = None  # the case's UAT (SIRUTA), when the event names it
    purpose: str | None = None  # why a case was read: a code of access-purposes.yaml, never free text


def _first(deadlines: Mapping[str, datetime]) -> datetime | None:
    return min(deadlines.values(), default=None)


def notification_id(event_source: str, event_id: str, recipient: str) -> str:
    """Deterministic, so a redelivered event cannot make a second notification even if the
    inbox did not catch it (CloudEvents ids are unique per source)."""
    return str(uuid.uuid5(NAMESPACE, f"{event_source}|{event_id}|{recipient}"))


def case_opened(case: CaseOpened) -> list[Notice]:
    return [
        Notice(recipient, "case-informed", case.case_id, None, case.urgency.value,
               tuple(case.categories), case.do_not_contact, deadline=_first(case.deadlines),
               uat=case.uat_siruta)
        for recipient in dict.fromkeys(case.informed)
    ]


def report_added(added: CaseReportAdded) -> list[Notice]:
    """The lead learns that another report about the child joined its case."""
    return [Notice(added.lead, "report-added", added.case_id, None, added.urgency.value,
                   tuple(added.categories))]


def referral_requested(referral: ReferralRequested) -> list[Notice]:
    return [Notice(referral.to, "referral-requested", referral.case_id, referral.referral_id,
                   referral.urgency.value, tuple(referral.categories), referral.do_not_contact,
                   deadline=_first(referral.deadlines))]


def referral_transitioned(step: ReferralTransitioned, categories: tuple[str, ...],
                          do_not_contact: bool, reasons: Collection[str] = ()) -> list[Notice]:
    """Both sides hear of every step: the referrer learns its referral was taken, or
    returned unanswered; the receiving institution sees its own inbox move. A note is
    told by its id only; a reason only when it is a code of ``reasons`` (an event from
    before the catalogue may carry free text in both: neither is passed on)."""
    reason = step.reason if step.reason in reasons else None
    for_referrer = {"accept": "referral-accepted", "expire": "referral-returned"}.get(
        step.command, "referral-updated")
    recipients = {step.referrer: for_referrer}
    recipients.setdefault(step.to, "referral-updated")
    return [Notice(recipient, kind, step.case_id, step.referral_id, step.urgency.value, categories,
                   do_not_contact, step.to_state, step.outcome, step.note_id, reason, step.forwarded_to)
            for recipient, kind in recipients.items()]


def referral_overdue(late: ReferralOverdue, categories: tuple[str, ...], do_not_contact: bool) -> list[Notice]:
    """A missed step goes to the receiving institution's supervisors, and for P0/P1 to the
    county coordinator as well (level 2)."""
    return [Notice(recipient, "referral-overdue", late.case_id, late.referral_id, late.urgency.value,
                   categories, do_not_contact, late.step, deadline=late.due_at)
            for recipient in dict.fromkeys(late.escalate_to)]


def case_accessed(access: AccessRecorded, lead: str, urgency: str, categories: tuple[str, ...]) -> list[Notice]:
    """Like CP-IS for hospitals: when someone from another institution opens a child's
    case, the case's lead is told who looked, when and why. Reads by the lead itself, and
    auditors' searches (no institution), tell nobody. "Why" is the purpose's code only: the
    reader's free text (``purpose_text``) stays in the audit trail, since it may name people.
    The person's rights are the exception: an export, rectification or restriction (a
    purpose serving a right) is told to the lead even when its own officer acted, so the
    controller always knows (docs/privacy/rights.md)."""
    if access.case_id is None or access.actor_institution is None:
        return []
    if access.actor_institution == lead and not serves_a_right(access.purpose):
        return []
    who = f"{access.actor_institution} ({access.actor}), {access.at:%Y-%m-%d %H:%M} UTC"
    return [Notice(lead, "case-accessed", access.case_id, None, urgency, categories, detail=who,
                   purpose=access.purpose)]


def sealed_value_opened(access: AccessRecorded, lead: str, urgency: str,
                        categories: tuple[str, ...]) -> list[Notice]:
    """Break-glass in the audit trail (decision 0016): someone, an auditor too, opened a
    value the trail keeps sealed (a report of the case). The lead is told who, when and why
    (the purpose's code; the reader's own words stay in the trail)."""
    if not access.break_glass or access.case_id is None:
        return []
    who = f"{access.actor} (audit, break-glass), {access.at:%Y-%m-%d %H:%M} UTC"
    return [Notice(lead, "case-accessed", access.case_id, None, urgency, categories, detail=who,
                   purpose=access.purpose)]


def referral_accepted(referral: ReferralAccepted, urgency: str,
                      categories: tuple[str, ...]) -> list[Notice]:
    """The referrer learns its referral was taken. The acceptance carries neither urgency
    nor categories, so they come from the request; its free-text note is never passed on."""
    return [Notice(referral.referrer, "referral-accepted", referral.case_id,
                   referral.referral_id, urgency, categories)]
