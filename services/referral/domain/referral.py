"""A referral asks one institution to act for a child or family, and tracks it to an
outcome, as FHIR Task does for closed-loop referrals (Gravity SDOH):

    requested → received → accepted | rejected
    accepted → in-progress ⇄ on-hold → completed | failed
    cancelled (by the referrer), entered-in-error (from any state)

Pure: every command is a method that returns the next Referral, or raises
ReferralRefused with a code the asker gets back."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from contracts.reference import ReferralReason
from contracts.refusals import Refused


class ReferralRefused(Refused):
    """A referral command the lifecycle or the asker's role does not allow."""


class State(str, Enum):
    REQUESTED = "requested"
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    IN_PROGRESS = "in-progress"
    ON_HOLD = "on-hold"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"


TERMINAL = frozenset({State.REJECTED, State.COMPLETED, State.FAILED, State.CANCELLED,
                      State.ENTERED_IN_ERROR})
OPEN = frozenset(State) - TERMINAL


class Side(str, Enum):
    RECEIVER = "receiver"
    REFERRER = "referrer"
    SYSTEM = "system"  # the network itself: deadlines


@dataclass(frozen=True)
class Rule:
    side: Side
    from_states: frozenset[State]
    to: State | None  # None: the state stays (notes, claims)
    needs_reason: bool = False
    needs_outcome: bool = False


R, F = Side.RECEIVER, Side.REFERRER
# The whole lifecycle, as data: command -> who may, from where, to where, what it needs.
RULES: dict[str, Rule] = {
    "acknowledge": Rule(R, frozenset({State.REQUESTED}), State.RECEIVED),
    "accept": Rule(R, frozenset({State.REQUESTED, State.RECEIVED}), State.ACCEPTED),
    "reject": Rule(R, frozenset({State.REQUESTED, State.RECEIVED}), State.REJECTED, needs_reason=True),
    "start": Rule(R, frozenset({State.ACCEPTED}), State.IN_PROGRESS),
    "hold": Rule(R, frozenset({State.IN_PROGRESS}), State.ON_HOLD, needs_reason=True),
    "resume": Rule(R, frozenset({State.ON_HOLD}), State.IN_PROGRESS),
    "complete": Rule(R, frozenset({State.IN_PROGRESS}), State.COMPLETED, needs_outcome=True),
    "fail": Rule(R, frozenset({State.ACCEPTED, State.IN_PROGRESS, State.ON_HOLD}), State.FAILED,
                 needs_reason=True),
    "forward": Rule(R, frozenset({State.REQUESTED, State.RECEIVED}), State.REJECTED, needs_reason=True),
    "cancel": Rule(F, OPEN, State.CANCELLED, needs_reason=True),
    "mark-error": Rule(F, frozenset(State) - {State.ENTERED_IN_ERROR}, State.ENTERED_IN_ERROR,
                       needs_reason=True),
    "note": Rule(R, frozenset(State) - {State.ENTERED_IN_ERROR}, None),
    "expire": Rule(Side.SYSTEM, frozenset({State.REQUESTED, State.RECEIVED}), State.FAILED,
                   needs_reason=True),
}
# Progress notes go both ways: the referrer may add feedback too.
EITHER_SIDE = frozenset({"note"})


@dataclass(frozen=True)
class Actor:
    institution: str | None  # None for the network itself
    person: str | None = None
    roles: frozenset[str] = frozenset()

    @staticmethod
    def system() -> "Actor":
        return Actor(None, "punte", frozenset({"system"}))


@dataclass(frozen=True)
class Transition:
    command: str
    from_state: State
    to_state: State
    actor: Actor
    at: datetime
    reason: str | None = None  # a code of referral-reasons.yaml
    outcome: str | None = None
    note: str | None = None  # free text: kept sealed in the case file, never published


@dataclass(frozen=True)
class Referral:
    referral_id: str
    case_id: str
    referrer: str
    to: str
    urgency: str
    state: State = State.REQUESTED
    owner: str | None = None
    history: tuple[Transition, ...] = field(default=(), compare=False)

    def side_of(self, actor: Actor) -> Side | None:
        if actor.institution is None:
            return Side.SYSTEM
        if actor.institution == self.to:
            return Side.RECEIVER
        if actor.institution == self.referrer:
            return Side.REFERRER
        return None

    def apply(self, command: str, actor: Actor, at: datetime, reason: str | None = None,
              outcome: str | None = None, note: str | None = None,
              outcomes: frozenset[str] = frozenset(),
              reasons: Mapping[str, ReferralReason] = {}) -> tuple["Referral", Transition]:
        """The next referral and the step that made it. A reason is a code of ``reasons``
        (referral-reasons.yaml) listed for the command: free text would travel to both
        sides in every notice, so the details go in the note, which stays in the case file."""
        rule = RULES.get(command)
        if rule is None:
            raise ReferralRefused("UNKNOWN_COMMAND", f"no referral command {command!r}")
        side = self.side_of(actor)
        allowed = {rule.side} | ({Side.RECEIVER, Side.REFERRER} if command in EITHER_SIDE else set())
        if side not in allowed:
            code = {Side.RECEIVER: "NOT_REFERRAL_RECIPIENT", Side.REFERRER: "NOT_REFERRER",
                    Side.SYSTEM: "NOT_ALLOWED"}[rule.side]
            raise ReferralRefused(code, f"{command} is for the {rule.side.value}")
        if self.state not in rule.from_states:
            raise ReferralRefused("ILLEGAL_TRANSITION", f"cannot {command} a referral {self.state.value}")
        if rule.needs_reason and not reason:
            raise ReferralRefused("REASON_REQUIRED", f"{command} needs a reason")
        if reason is not None:
            known = reasons.get(reason)
            if known is None or command not in known.commands:
                # Never repeat what was sent: it may be free text naming a child.
                raise ReferralRefused("UNKNOWN_REASON", f"{command}: the reason must be a code of "
                                                        f"referral-reasons.yaml listed for {command}")
            if known.note_required and not note:
                raise ReferralRefused("NOTE_REQUIRED", f"the reason {reason} needs a note with the details")
        if rule.needs_outcome and outcome not in outcomes:
            raise ReferralRefused("OUTCOME_REQUIRED", f"{command} needs an outcome code from the catalogue")
        to = rule.to or self.state
        transition = Transition(command, self.state, to, actor, at, reason, outcome, note)
        return replace(self, state=to, history=self.history + (transition,)), transition

    def claim(self, actor: Actor) -> "Referral":
        """A case manager of the receiving institution takes the referral from the team inbox."""
        self._receiver_open(actor)
        if self.owner is not None and self.owner != actor.person:
            raise ReferralRefused("ALREADY_CLAIMED", f"claimed by {self.owner}; a supervisor reassigns")
        return replace(self, owner=actor.person)

    def assign(self, actor: Actor, person: str) -> "Referral":
        """A supervisor of the receiving institution gives the referral to a case manager."""
        self._receiver_open(actor)
        if "supervisor" not in actor.roles:
            raise ReferralRefused("NOT_SUPERVISOR", "only a supervisor assigns")
        return replace(self, owner=person)

    def _receiver_open(self, actor: Actor) -> None:
        if self.side_of(actor) is not Side.RECEIVER:
            raise ReferralRefused("NOT_REFERRAL_RECIPIENT", "only the receiving institution")
        if self.state in TERMINAL:
            raise ReferralRefused("ILLEGAL_TRANSITION", f"the referral is {self.state.value}")
