"""Which people a notice reaches, on which channel and when: the dispatch plan.

- Who: a referral's updates go to the case manager holding it; missed deadlines to the
  supervisors (and, at a DGASPC, its coordinators); anything else to the institution's
  case managers covering the case's UAT, and team-level notices to the team mailbox.
- P0 cases that need someone to act (a new case or referral, a report added, a missed
  deadline) become an *alert*: at once, on every channel of whoever is on call, re-sent
  and escalated until someone acknowledges it (``escalation_step``).
- P0/P1 go at once, even in quiet hours; P2/P3 go into the next digest (or one by one for
  people who turned the digest off), never in quiet hours, and never by SMS.
- A person is paged (alert e-mail/SMS) at most ``PageCap.pages`` times per window
  (``limit_pages``): a flood of P0 reports must not page people without end. Alerts beyond
  stay in the inbox, to be acknowledged, and reach the person as one digest e-mail at the
  window's end.
Pure: the caller supplies the clock, the owner of the referral and people's preferences."""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

from services.notification.domain.notices import Notice
from services.notification.domain.recipients import (
    Channel,
    InstitutionRecipients,
    Preference,
    Recipients,
    county_coordinators,
    next_digest,
    next_quiet_end,
)

Purpose = Literal["notice", "digest", "alert"]
URGENT = frozenset({"P0", "P1"})
# Notices about which someone must act now, if the case is P0.
ALERT_KINDS = frozenset({"referral-requested", "case-informed", "report-added", "referral-overdue"})
# Notices the team mailbox gets, besides the people concerned.
TEAM_KINDS = frozenset({"referral-requested", "case-informed", "referral-overdue", "referral-returned"})
# Notices about a referral, which go to the case manager holding it when there is one.
OWNED_KINDS = frozenset({"referral-updated", "referral-accepted", "referral-returned", "report-added"})
# Escalation levels of an alert: 0 whoever is on call, 1 the supervisors, 2 the county's
# coordinators (at the county DGASPC).
LAST_LEVEL = 2


def team(institution: str) -> str:
    """The pseudo-person of an institution's team mailbox."""
    return f"team:{institution}"


@dataclass(frozen=True)
class Outgoing:
    person: str
    channel: Channel
    address: str
    purpose: Purpose
    due_at: datetime


@dataclass(frozen=True)
class Plan:
    messages: tuple[Outgoing, ...]
    alert: bool  # the notice must be acknowledged; escalate until it is


def audience(notice: Notice, recipients: Recipients, owner: str | None, uat: int | None = None) -> list[str]:
    """The people of the receiving institution a notice concerns."""
    institution = notice.recipient
    if notice.kind == "referral-overdue":
        return recipients.members(institution, "supervisor", "coordinator")
    holder = recipients.people.get(owner) if owner else None
    if notice.kind in OWNED_KINDS and holder is not None and holder.institution == institution:
        return [owner]  # type: ignore[list-item]
    return [pid for pid in recipients.members(institution, "case-manager")
            if uat is None or not recipients.people[pid].uats or uat in recipients.people[pid].uats]


def reachable(recipients: Recipients, person_id: str, available: Collection[Channel]) -> list[tuple[Channel, str]]:
    """Every channel the person can be reached on and their institution allows."""
    person = recipients.people[person_id]
    inst = recipients.institutions[person.institution]
    found: list[tuple[Channel, str]] = []
    for channel in ("email", "sms"):
        address = person.address(channel)  # type: ignore[arg-type]
        if address and channel in inst.channels and channel in available:
            found.append((channel, address))  # type: ignore[arg-type]
    return found


def _ordinary(notice: Notice, inst: InstitutionRecipients, recipients: Recipients, person: str,
              channels: list[tuple[Channel, str]], digest: bool, now: datetime) -> list[Outgoing]:
    if notice.urgency in URGENT:
        return [Outgoing(person, channel, address, "notice", now) for channel, address in channels]
    # Not urgent: e-mail only, in the digest unless turned off, outside quiet hours.
    emails = [(c, a) for c, a in channels if c == "email"]
    purpose: Purpose = "digest" if digest and inst.digest_minutes > 0 else "notice"
    due = next_digest(inst.digest_minutes, recipients.zone, now) if purpose == "digest" else now
    if inst.quiet_hours is not None:
        due = next_quiet_end(inst.quiet_hours, recipients.zone, due)
    return [Outgoing(person, channel, address, purpose, due) for channel, address in emails]


def plan(notice: Notice, recipients: Recipients, now: datetime, *, owner: str | None = None,
         preferences: Mapping[str, Preference] | None = None,
         available: Collection[Channel] = ("email", "sms")) -> Plan:
    inst = recipients.of(notice.recipient)
    if inst is None:
        return Plan((), False)  # an institution with no people configured: inbox and systems only
    preferences = preferences or {}
    alert = notice.urgency == "P0" and notice.kind in ALERT_KINDS
    messages: list[Outgoing] = []
    on_call = recipients.on_call(notice.recipient, now) if alert else []
    for person in on_call:
        messages += [Outgoing(person, c, a, "alert", now) for c, a in reachable(recipients, person, available)]
    for person in audience(notice, recipients, owner, notice.uat):
        if person in on_call:
            continue  # already alerted on every channel
        preference = preferences.get(person)
        profile = recipients.people[person]
        chosen = preference.channels if preference else profile.channels
        digest = preference.digest if preference else profile.digest
        channels = [(c, a) for c, a in reachable(recipients, person, available) if c in chosen]
        messages += _ordinary(notice, inst, recipients, person, channels, digest, now)
    if notice.kind in TEAM_KINDS and inst.team_email and "email" in available:
        messages += _ordinary(notice, inst, recipients, team(notice.recipient),
                              [("email", inst.team_email)], True, now)
    return Plan(tuple(messages), alert)


def escalation_step(level: int, round: int, resends: int) -> tuple[int, int] | None:
    """After ``round`` sends at ``level`` went unacknowledged: the (level, round) of the
    next send, or None when even the last level was tried."""
    if round <= resends:
        return level, round + 1
    if level < LAST_LEVEL:
        return level + 1, 1
    return None


class AlertStep(NamedTuple):
    level: int
    round: int
    targets: list[str]


def next_alert_step(level: int, round: int, resends: int,
                    targets_at: Callable[[int], list[str]]) -> AlertStep | None:
    """The next send of an unacknowledged alert: the next step of the ladder whose level has
    somebody to tell (an empty level is passed over), or None when nobody is left."""
    step = escalation_step(level, round, resends)
    while step is not None:
        targets = targets_at(step[0])
        if targets:
            return AlertStep(step[0], step[1], targets)
        step = (step[0] + 1, 1) if step[0] < LAST_LEVEL else None
    return None


def alert_targets(level: int, institution: str, recipients: Recipients, county_dgaspc: Mapping[str, str],
                  now: datetime) -> list[str]:
    """Who holds an alert at ``level``."""
    if level == 0:
        return recipients.on_call(institution, now)
    if level == 1:
        inst = recipients.of(institution)
        return list(inst.supervisors) if inst else []
    return county_coordinators(recipients, county_dgaspc, institution)


@dataclass(frozen=True)
class PageCap:
    """At most ``pages`` pages per person per clock-aligned ``window`` (10:00-10:10, ...);
    one send of an alert is one page, whatever the number of channels it goes on."""

    pages: int = 5
    window: timedelta = timedelta(minutes=10)

    def window_start(self, now: datetime) -> datetime:
        seconds = self.window.total_seconds()
        return now - timedelta(seconds=now.timestamp() % seconds)

    def window_end(self, now: datetime) -> datetime:
        return self.window_start(now) + self.window


class Paging(NamedTuple):
    sent: tuple[Outgoing, ...]  # to queue as planned
    held: tuple[Outgoing, ...]  # alerts over the cap, as digest e-mail due at the window's end


def limit_pages(messages: Iterable[Outgoing], pages: Mapping[str, int], cap: PageCap, now: datetime) -> Paging:
    """The alert messages of people already paged ``cap.pages`` times in this window
    (``pages``: person -> pages so far) are held back: each becomes a line of the digest
    e-mail the person gets at the window's end (an SMS has no digest: the inbox has it).
    Other messages are left as they are."""
    sent: list[Outgoing] = []
    held: list[Outgoing] = []
    for message in messages:
        if message.purpose != "alert" or pages.get(message.person, 0) < cap.pages:
            sent.append(message)
        elif message.channel == "email":
            held.append(Outgoing(message.person, "email", message.address, "digest", cap.window_end(now)))
    return Paging(tuple(sent), tuple(held))
