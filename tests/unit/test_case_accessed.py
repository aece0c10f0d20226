"""Access notifications (as CP-IS does for hospitals): the case's lead learns who from
another institution opened the case, when and why; nobody else is told. "Why" is a code of
the purpose list (contracts/reference/access-purposes.yaml) and its labels: the free text
a reader may add stays in the audit trail and never travels in a notice."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from contracts.events import AccessRecorded
from contracts.reference import risk_categories
from runtime.access import UnknownPurpose, parse_purpose, purpose_named, purposes
from services.notification.domain.messages import summarise
from services.notification.domain.notices import case_accessed, sealed_value_opened

AT = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)
# Synthetic free text a reader might type: it names a neighbour and a street.
FREE_TEXT = "sesizarea vecinei Ionescu-Test, str. Exemplului 3"


def access(institution: str | None, actor: str = "cm.ipj.ion", purpose: str = "verification",
           text: str | None = FREE_TEXT) -> AccessRecorded:
    return AccessRecorded(actor=actor, actor_institution=institution, purpose=purpose, purpose_text=text,
                          service="intake", resource="/v1/cases/case-7", case_id="case-7", at=AT)


def told(event: AccessRecorded):
    [notice] = case_accessed(event, "dgaspc-bc", "P1", ("neglect",))
    return notice, summarise(notice.kind, notice.urgency, notice.categories, notice.case_id, risk_categories(),
                             notice.do_not_contact, notice.detail, purpose=purpose_named(notice.purpose))


def test_the_lead_is_told_who_looked_when_and_why():
    notice, summary = told(access("ipj-bc"))
    assert (notice.recipient, notice.kind, notice.case_id, notice.purpose) == (
        "dgaspc-bc", "case-accessed", "case-7", "verification")
    for text in (summary.ro, summary.en):
        assert "ipj-bc" in text and "cm.ipj.ion" in text and "2026-11-23 09:30" in text and "case-7" in text
    assert purposes()["verification"].label_ro in summary.ro
    assert purposes()["verification"].label_en in summary.en


def test_the_free_text_of_a_purpose_is_never_in_a_notice():
    notice, summary = told(access("ipj-bc"))
    for text in (summary.ro, summary.en, repr(notice)):
        assert "Ionescu" not in text and "Exemplului" not in text


def test_a_purpose_outside_the_list_is_not_passed_on():
    # An access event from before the list, whose purpose was free text.
    notice, summary = told(access("ipj-bc", purpose="verificare sesizare Ionescu", text=None))
    assert "Ionescu" not in summary.ro + summary.en + repr(notice.detail)
    assert "scop nedeclarat" in summary.ro and "purpose not stated" in summary.en


def test_the_lead_reading_its_own_case_and_auditors_tell_nobody():
    assert case_accessed(access("dgaspc-bc"), "dgaspc-bc", "P1", ("neglect",)) == []
    assert case_accessed(access(None, "auditor"), "dgaspc-bc", "P1", ("neglect",)) == []


def test_the_purpose_list_has_a_label_in_each_language_for_each_code():
    listed = purposes()
    assert {"case-work", "verification", "court-request", "dpo-request", "audit-inspection",
            "statistics"} <= set(listed)
    for code, purpose in listed.items():
        assert purpose.code == code and purpose.label_ro and purpose.label_en


@pytest.mark.parametrize(("given", "code", "text"), [
    ("", "case-work", None),
    ("verification", "verification", None),
    (" court-request ;  ", "court-request", None),
    ("audit-inspection; control%20tematic%20ISJ%2C%20anexa%203", "audit-inspection", "control tematic ISJ, anexa 3"),
    ("dpo-request; cererea nr. 7; art. 15", "dpo-request", "cererea nr. 7; art. 15"),
    ("statistics; raport%0Aanual", "statistics", "raport anual"),  # no control characters kept
])
def test_a_purpose_is_a_code_and_optional_free_text(given, code, text):
    stated = parse_purpose(given)
    assert (stated.code, stated.text) == (code, text)


@pytest.mark.parametrize("given", ["control tematic", "Verification", "verification,court-request", "x; y",
                                   "%76erification"])
def test_a_code_outside_the_list_is_refused(given):
    with pytest.raises(UnknownPurpose):
        parse_purpose(given)


def test_an_auditor_opening_a_sealed_value_is_told_to_the_lead():
    """Break-glass in the audit trail (decision 0016): whoever opened a sealed value of the
    case, an auditor too, the lead learns who, when and why (the code, never the text)."""
    opened = AccessRecorded(actor="aud.ana", actor_institution=None, roles=["auditor"], purpose="court-request",
                            purpose_text=FREE_TEXT, service="audit", resource="/entries/12/value",
                            case_id="case-7", query={"seq": "12"}, at=AT, break_glass=True)
    [notice] = sealed_value_opened(opened, "dgaspc-bc", "P1", ("neglect",))
    assert (notice.recipient, notice.kind, notice.case_id, notice.purpose) == (
        "dgaspc-bc", "case-accessed", "case-7", "court-request")
    summary = summarise(notice.kind, notice.urgency, notice.categories, notice.case_id, risk_categories(),
                        notice.do_not_contact, notice.detail, purpose=purpose_named(notice.purpose))
    for text in (summary.ro, summary.en):
        assert "aud.ana" in text and "2026-11-23 09:30" in text and "Ionescu" not in text
    assert purposes()["court-request"].label_en in summary.en
    # An auditor's search of the case (no value opened) still tells nobody.
    assert sealed_value_opened(access(None, "aud.ana"), "dgaspc-bc", "P1", ("neglect",)) == []
