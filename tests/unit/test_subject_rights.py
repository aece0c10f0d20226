"""The person's rights (GDPR art. 15-18) as pure rules: which purposes serve which right,
what a rectification makes of the identity, which cases a new report may join, and that
the lead is told of a right exercised on its case even by its own officer."""
from __future__ import annotations

from collections import namedtuple
from datetime import datetime, timezone

import pytest

from contracts.access import Relation, decide
from contracts.events import AccessRecorded
from contracts.rights import rights_purposes, serves_a_right
from services.intake.domain.rights import InvalidCorrection, cnp_corrected, corrected, joinable
from services.notification.domain.notices import case_accessed

AT = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)
CURRENT = {"cnp": "5150412041230", "given_name": "Ana", "family_name": "Testescu", "birth_date": "2015-04-12",
           "birth_year": 2015, "address": "str. Exemplului nr. 1"}


def test_each_right_has_its_own_purpose_and_only_those_serve_a_right():
    assert rights_purposes() == {"subject-access": "subject.export", "rectification": "subject.rectify",
                                 "restriction": "subject.restrict"}
    assert not serves_a_right("case-work") and not serves_a_right(None)


@pytest.mark.parametrize(("action", "roles", "allowed"), [
    ("subject.export", ["privacy-officer"], True),
    ("subject.export", ["case-manager", "supervisor", "coordinator"], False),
    ("subject.rectify", ["supervisor"], True),
    ("subject.rectify", ["case-manager"], False),
    ("subject.restrict", ["privacy-officer"], True),
    ("subject.restrict", ["supervisor"], False),
])
def test_the_rights_are_the_leads_alone(action, roles, allowed):
    lead = {Relation.ANY, Relation.LEAD, Relation.PARTICIPANT}
    assert bool(decide(action, roles, lead, "case")) is allowed
    # A participant's officer is refused as not the lead; an outsider's is told no such case.
    assert decide(action, ["privacy-officer"], {Relation.ANY, Relation.PARTICIPANT}, "case").code in (
        "NOT_CASE_LEAD", "FORBIDDEN")
    if "privacy-officer" in roles:
        assert decide(action, roles, {Relation.ANY}, "case").code == "UNKNOWN_CASE"


def test_a_rectification_is_the_current_identity_with_the_corrections():
    after = corrected(CURRENT, {"given_name": "Ana-Maria", "birth_date": "2015-05-12"})
    assert after == {**CURRENT, "given_name": "Ana-Maria", "birth_date": "2015-05-12", "birth_year": 2015}
    assert CURRENT["given_name"] == "Ana", "the version it starts from is left as it was"


@pytest.mark.parametrize("changes", [{}, {"description": "x"}, {"cnp": "5150412041231"}, {"birth_date": "12.04.2015"}])
def test_a_correction_that_is_not_one_is_refused(changes):
    with pytest.raises(InvalidCorrection):
        corrected(CURRENT, changes)


def test_only_a_changed_cnp_counts_as_corrected():
    assert cnp_corrected(CURRENT, {"cnp": "5150412041257"}) == "5150412041257"
    assert cnp_corrected(CURRENT, {"cnp": CURRENT["cnp"]}) is None
    assert cnp_corrected(CURRENT, {"given_name": "Ana-Maria"}) is None


def test_a_restricted_case_takes_no_new_report():
    Case = namedtuple("Case", "case_id")
    assert joinable([Case("case-1"), Case("case-2")], {"case-1"}) == [Case("case-2")]


def access(institution: str, purpose: str) -> AccessRecorded:
    return AccessRecorded(actor=f"dpo.{institution}", actor_institution=institution, purpose=purpose,
                          service="intake", resource="/privacy/cases/case-7/export", case_id="case-7", at=AT)


def test_the_lead_is_told_of_a_right_exercised_by_its_own_officer():
    [notice] = case_accessed(access("dgaspc-bc", "subject-access"), "dgaspc-bc", "P1", ("neglect",))
    assert (notice.recipient, notice.kind, notice.purpose) == ("dgaspc-bc", "case-accessed", "subject-access")
    # Its own case work stays untold, as before.
    assert case_accessed(access("dgaspc-bc", "case-work"), "dgaspc-bc", "P1", ("neglect",)) == []
