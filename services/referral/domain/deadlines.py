"""When each step of a referral is due, and what a missed step means.

Steps: acknowledge, decide (accept or reject), first_contact, outcome; past
``return_after`` an unanswered referral goes back to the referrer. The values are data
(contracts/reference/referral-deadlines.yaml)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.reference import REFERRAL_STEPS
from runtime.clock import due
from services.referral.domain.referral import State

# A step is still owed while the referral is in one of these states.
OWED: dict[str, frozenset[State]] = {
    "acknowledge": frozenset({State.REQUESTED}),
    "decide": frozenset({State.REQUESTED, State.RECEIVED}),
    "first_contact": frozenset({State.REQUESTED, State.RECEIVED, State.ACCEPTED}),
    "outcome": frozenset({State.REQUESTED, State.RECEIVED, State.ACCEPTED, State.IN_PROGRESS,
                          State.ON_HOLD}),
    "return_after": frozenset({State.REQUESTED, State.RECEIVED}),
}


def table_for(kind: str, urgency: str, table: Mapping[str, Any]) -> Mapping[str, Any]:
    """Information requests have their own (statutory 15 days); the rest go by urgency."""
    if kind == "information-request":
        return table["information_request"]
    return table["levels"][urgency]


def schedule(kind: str, urgency: str, requested_at: datetime,
             table: Mapping[str, Any]) -> dict[str, datetime]:
    level = table_for(kind, urgency, table)
    return {step: due(requested_at, level[step], level["clock"]) for step in REFERRAL_STEPS if step in level}


@dataclass(frozen=True)
class Escalate:
    step: str
    level: int
    to: tuple[str, ...]


@dataclass(frozen=True)
class Return:
    """The referral goes back to the referrer, failed for want of an answer."""


def on_due(step: str, state: State, kind: str, urgency: str, receiver: str, coordinator: str | None,
           table: Mapping[str, Any]) -> Escalate | Return | None:
    """What a due timer does: nothing when the step was done; otherwise tell the receiving
    institution's supervisor (level 1), adding the county coordinator for P0/P1 when the
    decision is late (level 2); past ``return_after``, return the referral."""
    if state not in OWED[step]:
        return None
    if step == "return_after":
        return Return()
    urgent = bool(table_for(kind, urgency, table).get("escalate_to_coordinator"))
    if step == "decide" and urgent and coordinator and coordinator != receiver:
        return Escalate(step, 2, (receiver, coordinator))
    return Escalate(step, 1, (receiver,))
