"""Every (state, command, actor) combination of the referral lifecycle, against an
explicit table of what is allowed: anything not listed is refused with its code."""
from __future__ import annotations

from datetime import datetime, timezone
from itertools import product

import pytest

from contracts.reference import referral_reasons
from services.referral.domain.referral import RULES, Actor, Referral, ReferralRefused, State

AT = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
OUTCOMES = frozenset({"services-provided-psychological"})
REASONS = referral_reasons()
RECEIVER, REFERRER, OTHER = Actor("dgaspc-bc", "cm.1"), Actor("isj-bc", "cm.2"), Actor("ipj-bc", "cm.3")
SYSTEM = Actor.system()
ACTORS = {"receiver": RECEIVER, "referrer": REFERRER, "other": OTHER, "system": SYSTEM}
S = State
ALL = set(State)
OPEN = {S.REQUESTED, S.RECEIVED, S.ACCEPTED, S.IN_PROGRESS, S.ON_HOLD}

# command -> (who may, from which states, to which state); written out by hand from the
# lifecycle, independently of RULES.
EXPECTED: dict[str, tuple[set[str], set[State], State | None]] = {
    "acknowledge": ({"receiver"}, {S.REQUESTED}, S.RECEIVED),
    "accept": ({"receiver"}, {S.REQUESTED, S.RECEIVED}, S.ACCEPTED),
    "reject": ({"receiver"}, {S.REQUESTED, S.RECEIVED}, S.REJECTED),
    "forward": ({"receiver"}, {S.REQUESTED, S.RECEIVED}, S.REJECTED),
    "start": ({"receiver"}, {S.ACCEPTED}, S.IN_PROGRESS),
    "hold": ({"receiver"}, {S.IN_PROGRESS}, S.ON_HOLD),
    "resume": ({"receiver"}, {S.ON_HOLD}, S.IN_PROGRESS),
    "complete": ({"receiver"}, {S.IN_PROGRESS}, S.COMPLETED),
    "fail": ({"receiver"}, {S.ACCEPTED, S.IN_PROGRESS, S.ON_HOLD}, S.FAILED),
    "cancel": ({"referrer"}, OPEN, S.CANCELLED),
    "mark-error": ({"referrer"}, ALL - {S.ENTERED_IN_ERROR}, S.ENTERED_IN_ERROR),
    "note": ({"receiver", "referrer"}, ALL - {S.ENTERED_IN_ERROR}, None),
    "expire": ({"system"}, {S.REQUESTED, S.RECEIVED}, S.FAILED),
}


def test_the_table_covers_every_command():
    assert set(EXPECTED) == set(RULES)


@pytest.mark.parametrize("state, command, who", list(product(State, sorted(EXPECTED), ACTORS)),
                         ids=lambda v: getattr(v, "value", v))
def test_every_state_command_and_actor(state, command, who):
    referral = Referral("ref-1", "case-1", referrer="isj-bc", to="dgaspc-bc", urgency="P1", state=state)
    sides, sources, target = EXPECTED[command]
    # A reason is a code of the catalogue listed for the command ("other" needs a note).
    reason = ("NO_RESPONSE" if command == "expire" else "other") if RULES[command].needs_reason else None
    kwargs = {"reason": reason, "note": "(sintetic)", "outcome": "services-provided-psychological",
              "outcomes": OUTCOMES, "reasons": REASONS}
    if who in sides and state in sources:
        after, transition = referral.apply(command, ACTORS[who], AT, **kwargs)
        assert after.state == (target or state)
        assert (transition.from_state, transition.to_state) == (state, after.state)
        assert after.history[-1] == transition
    else:
        with pytest.raises(ReferralRefused) as refused:
            referral.apply(command, ACTORS[who], AT, **kwargs)
        if who not in sides:
            expected = {"receiver": "NOT_REFERRAL_RECIPIENT", "referrer": "NOT_REFERRER",
                        "system": "NOT_ALLOWED"}[sorted(sides)[0]] if len(sides) == 1 else "NOT_REFERRAL_RECIPIENT"
            assert refused.value.code == expected
        else:
            assert refused.value.code == "ILLEGAL_TRANSITION"


@pytest.mark.parametrize("command", [c for c, rule in RULES.items() if rule.needs_reason])
def test_a_reason_is_required(command):
    sides, sources, _ = EXPECTED[command]
    who = sorted(sides)[0]
    referral = Referral("r", "c", "isj-bc", "dgaspc-bc", "P1", state=sorted(sources)[0])
    with pytest.raises(ReferralRefused) as refused:
        referral.apply(command, ACTORS[who], AT, reason=None)
    assert refused.value.code == "REASON_REQUIRED"


@pytest.mark.parametrize("command", [c for c, rule in RULES.items() if rule.needs_reason])
def test_a_reason_is_a_code_of_the_catalogue_listed_for_the_command(command):
    sides, sources, _ = EXPECTED[command]
    who = ACTORS[sorted(sides)[0]]
    referral = Referral("r", "c", "isj-bc", "dgaspc-bc", "P1", state=sorted(sources)[0])
    listed = sorted(code for code, r in REASONS.items() if command in r.commands and not r.note_required)
    elsewhere = next(code for code, r in REASONS.items() if command not in r.commands)
    for refused_reason in ("familia s-a mutat (text liber)", elsewhere):
        with pytest.raises(ReferralRefused) as refused:
            referral.apply(command, who, AT, reason=refused_reason, reasons=REASONS)
        assert refused.value.code == "UNKNOWN_REASON"
        assert refused_reason not in refused.value.detail, "a refusal never repeats free text"
    if command in REASONS["other"].commands:
        with pytest.raises(ReferralRefused) as no_note:
            referral.apply(command, who, AT, reason="other", reasons=REASONS)
        assert no_note.value.code == "NOTE_REQUIRED"
    after, step = referral.apply(command, who, AT, reason=listed[0], reasons=REASONS)
    assert step.reason == listed[0]


def test_a_command_that_takes_no_reason_refuses_one():
    referral = Referral("r", "c", "isj-bc", "dgaspc-bc", "P1")
    with pytest.raises(ReferralRefused) as refused:
        referral.apply("accept", RECEIVER, AT, reason="not-competent", reasons=REASONS)
    assert refused.value.code == "UNKNOWN_REASON"


def test_completing_needs_an_outcome_from_the_catalogue():
    referral = Referral("r", "c", "isj-bc", "dgaspc-bc", "P1", state=S.IN_PROGRESS)
    for outcome in (None, "made-up"):
        with pytest.raises(ReferralRefused) as refused:
            referral.apply("complete", RECEIVER, AT, outcome=outcome, outcomes=OUTCOMES)
        assert refused.value.code == "OUTCOME_REQUIRED"


def test_claim_and_assign_keep_the_team_inbox_honest():
    referral = Referral("r", "c", "isj-bc", "dgaspc-bc", "P1")
    mine = referral.claim(Actor("dgaspc-bc", "cm.ana", frozenset({"case-manager"})))
    assert mine.owner == "cm.ana"
    with pytest.raises(ReferralRefused) as taken:
        mine.claim(Actor("dgaspc-bc", "cm.ion", frozenset({"case-manager"})))
    assert taken.value.code == "ALREADY_CLAIMED"
    with pytest.raises(ReferralRefused) as not_boss:
        mine.assign(Actor("dgaspc-bc", "cm.ion", frozenset({"case-manager"})), "cm.ion")
    assert not_boss.value.code == "NOT_SUPERVISOR"
    reassigned = mine.assign(Actor("dgaspc-bc", "sup.maria", frozenset({"supervisor"})), "cm.ion")
    assert reassigned.owner == "cm.ion"
    with pytest.raises(ReferralRefused) as outsider:
        referral.claim(Actor("isj-bc", "cm.x"))
    assert outsider.value.code == "NOT_REFERRAL_RECIPIENT"
