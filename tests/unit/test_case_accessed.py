"""Access notifications (as CP-IS does for hospitals): the case's lead learns who from
another institution opened the case, when and why; nobody else is told."""
from __future__ import annotations

from datetime import datetime, timezone

from contracts.events import AccessRecorded
from contracts.reference import risk_categories
from services.notification.domain.messages import summarise
from services.notification.domain.notices import case_accessed

AT = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)


def access(institution: str | None, actor: str = "cm.ipj.ion") -> AccessRecorded:
    return AccessRecorded(actor=actor, actor_institution=institution, purpose="verificare sesizare",
                          service="intake", resource="/v1/cases/case-7", case_id="case-7", at=AT)


def test_the_lead_is_told_who_looked_when_and_why():
    [notice] = case_accessed(access("ipj-bc"), "dgaspc-bc", "P1", ("neglect",))
    assert (notice.recipient, notice.kind, notice.case_id) == ("dgaspc-bc", "case-accessed", "case-7")
    summary = summarise(notice.kind, notice.urgency, notice.categories, notice.case_id,
                        risk_categories(), notice.do_not_contact, notice.detail)
    for text in (summary.ro, summary.en):
        assert "ipj-bc" in text and "cm.ipj.ion" in text and "2026-11-23 09:30" in text
        assert "verificare sesizare" in text and "case-7" in text


def test_the_lead_reading_its_own_case_and_auditors_tell_nobody():
    assert case_accessed(access("dgaspc-bc"), "dgaspc-bc", "P1", ("neglect",)) == []
    assert case_accessed(access(None, "auditor"), "dgaspc-bc", "P1", ("neglect",)) == []
