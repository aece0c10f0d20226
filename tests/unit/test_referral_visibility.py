"""What of a case and its referrals each institution sees and may end (referral's
domain/visibility.py over contracts.access): the reporter is no participant and sees a
summary; need-to-know cuts the categories; a statutory referral is ended by the rule."""
from __future__ import annotations

from datetime import datetime, timezone

from contracts.access import Relation, decide
from services.referral.domain import visibility
from services.referral.domain.visibility import Sides

AT = datetime(2026, 11, 29, 9, tzinfo=timezone.utc)
CASE = Sides(lead="dgaspc-bc", participants=("dgaspc-bc", "spas-colonesti", "ipj-bc"), reporters=("isj-bc",))
REFERRAL = {
    "referral_id": "ref-1", "case_id": "case-1", "referrer": "isj-bc", "to": "dgaspc-bc", "urgency": "P1",
    "categories": ["neglect", "sexual_abuse", "health_risk", "school_absenteeism"], "state": "completed",
    "kind": "case", "owner": "cm.ana", "service_id": None, "forwarded_from": None,
    "legal_basis": "statutory-duty", "do_not_contact": True, "deadlines": {"decide": AT.isoformat()},
    "requested_at": AT, "updated_at": AT, "outcome": "services-provided-legal",
    "history": [{"command": "note", "note": "Vizită (sintetic).", "note_id": "note-1", "person": "cm.ana"}],
    "notes": [{"note_id": "note-1", "at": AT, "command": "note", "by": "dgaspc-bc", "person": "cm.ana",
               "text": "Vizită (sintetic).", "erased": False}],
}


def seen_by(institution: str) -> dict | None:
    relations = visibility.to_referral(institution, referrer=REFERRAL["referrer"], to=REFERRAL["to"], case=CASE)
    return visibility.seen(REFERRAL, institution, relations)


def test_the_lead_sees_everything():
    lead = seen_by("dgaspc-bc")
    assert lead is not None and lead["view"] == "full"
    assert lead["categories"] == REFERRAL["categories"] and lead["history"] == REFERRAL["history"]
    assert lead["owner"] == "cm.ana" and lead["notes"] == REFERRAL["notes"]


def test_the_reporter_that_referred_sees_a_summary_with_what_a_school_may_know():
    school = seen_by("isj-bc")
    assert school is not None and school["view"] == "summary"
    assert (school["state"], school["urgency"], school["outcome"]) == ("completed", "P1", "services-provided-legal")
    assert school["deadlines"] == REFERRAL["deadlines"] and school["do_not_contact"] is True
    assert school["categories"] == ["school_absenteeism"]
    assert school["history"] == [] and school["owner"] is None
    # That a note exists, never what it says nor who wrote it.
    assert school["notes"] == [{"note_id": "note-1", "at": AT}]


def test_a_participant_that_is_no_side_of_a_referral_sees_nothing_of_it():
    # Its view would be full (a participant), but referral.read is for the sides and the lead.
    police = visibility.to_referral("ipj-bc", referrer="isj-bc", to="dgaspc-bc", case=CASE)
    assert not decide("referral.read", ["case-manager"], police, "referral")
    assert not visibility.in_plan_of("ipj-bc", visibility.to_case("ipj-bc", CASE), referrer="isj-bc", to="dgaspc-bc")
    assert visibility.in_plan_of("dgaspc-bc", visibility.to_case("dgaspc-bc", CASE), referrer="x", to="y")
    assert seen_by("das-bacau") is None


def test_a_reporter_is_no_participant_of_the_case():
    school = visibility.to_case("isj-bc", CASE)
    assert Relation.REPORTER in school and Relation.PARTICIPANT not in school
    assert decide("referral.request", ["case-manager"], school, "case").code == "UNKNOWN_CASE"  # hidden, like a stranger
    assert decide("referral.request", ["case-manager"], visibility.to_case("das-bacau", CASE), "case").code == "UNKNOWN_CASE"


def test_only_cancel_and_mark_error_of_a_statutory_referral_end_it():
    assert visibility.ends_statutory("cancel", "statutory-duty")
    assert visibility.ends_statutory("mark-error", "statutory-duty")
    assert not visibility.ends_statutory("cancel", "consent-pending")
    assert not visibility.ends_statutory("reject", "statutory-duty")
