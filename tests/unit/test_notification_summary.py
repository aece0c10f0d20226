"""Notification summaries, pure: they say how urgent, what risk (RO and EN labels) and
which case, and nothing that identifies the child."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from contracts.events import CaseOpened, ReferralAccepted, ReferralRequested, ReferralTransitioned, Reporter
from contracts.reference import referral_reasons, risk_categories
from services.notification.domain import notices
from services.notification.domain.messages import HEADLINES, summarise

LABELS = risk_categories()
CASE = "case-0123456789abcdef"
# Synthetic child data that must never reach a summary.
CHILD = {"cnp": "5100101040019", "name": "Ionel Popescu-Test", "address": "Str. Exemplu 1",
         "child_ref": "ch-00000000000000000000000000000000"}


def test_referral_summary_reads_as_in_the_design():
    s = summarise("referral-requested", "P1", ["neglect"], CASE, LABELS)
    assert s.ro == f"Trimitere nouă (P1): neglijare. Caz {CASE}"
    assert s.en == f"New referral (P1): neglect. Case {CASE}"


@pytest.mark.parametrize("kind", sorted(HEADLINES))
def test_every_kind_carries_urgency_labels_and_case(kind):
    s = summarise(kind, "P0", ["sexual_abuse", "domestic_violence"], CASE, LABELS)
    assert "(P0)" in s.ro and "(P0)" in s.en
    assert "abuz sexual" in s.ro and "violență domestică în prezența copilului" in s.ro
    assert "sexual abuse" in s.en and "domestic violence with a child present" in s.en
    assert CASE in s.ro and CASE in s.en


def test_unknown_category_shows_its_id_and_duplicates_once():
    s = summarise("case-informed", "P3", ["neglect", "neglect", "new_category"], CASE, LABELS)
    assert s.en.count("neglect") == 1 and "new_category" in s.en


def test_notices_carry_no_child_data():
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    opened = CaseOpened(
        case_id=CASE, child_ref=CHILD["child_ref"], uat_siruta=20297, categories=["neglect"],
        urgency="P1", lead="bc-dgaspc", informed=["bc-dsp", "bc-isj", "bc-dsp"],
        report_id="r-1", reporter=Reporter(institution="bc-isj", role="school-counsellor"),
        received_at=now,
    )
    requested = ReferralRequested(referral_id="ref-1", case_id=CASE, referrer="bc-isj",
                                  to="bc-dgaspc", urgency="P1", categories=["neglect"],
                                  requested_at=now)
    accepted = ReferralAccepted(referral_id="ref-1", case_id=CASE, referrer="bc-isj",
                                to="bc-dgaspc", accepted_at=now,
                                note=f"{CHILD['name']}, {CHILD['address']}, CNP {CHILD['cnp']}")
    found = [*notices.case_opened(opened), *notices.referral_requested(requested),
             *notices.referral_accepted(accepted, "P1", ("neglect",))]
    assert [(n.recipient, n.kind) for n in found] == [
        ("bc-dsp", "case-informed"), ("bc-isj", "case-informed"),
        ("bc-dgaspc", "referral-requested"), ("bc-isj", "referral-accepted"),
    ]
    for notice in found:
        s = summarise(notice.kind, notice.urgency, notice.categories, notice.case_id, LABELS)
        for text in (s.ro, s.en, repr(notice)):
            for secret in CHILD.values():
                assert secret not in text


def test_a_step_tells_its_reason_by_label_and_its_note_by_id_only():
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    reasons = referral_reasons()
    step = dict(referral_id="ref-1", case_id=CASE, referrer="bc-isj", to="bc-dgaspc", urgency="P1",
                command="reject", from_state="received", to_state="rejected", actor_institution="bc-dgaspc", at=now)
    coded = notices.referral_transitioned(ReferralTransitioned(**step, reason="outside-area", note_id="note-1"),
                                          ("neglect",), False, reasons)
    assert {(n.reason, n.note_id) for n in coded} == {("outside-area", "note-1")}
    s = summarise("referral-updated", "P1", ["neglect"], CASE, LABELS, detail="rejected",
                  reason=reasons["outside-area"], note_added=True)
    assert s.ro.startswith("Trimitere actualizată — refuzată; motivul: copilul nu locuiește în aria noastră; "
                           "notă nouă în dosar (P1)")
    assert s.en.startswith("Referral updated — rejected; reason: the child does not live in our area; "
                           "a new note in the case file (P1)")
    # An event from before the catalogue, with free text in both: neither is passed on.
    secret = f"{CHILD['name']}, CNP {CHILD['cnp']}"
    old = notices.referral_transitioned(ReferralTransitioned(**step, reason=secret, note=secret),
                                        ("neglect",), False, reasons)
    assert all(n.reason is None and n.note_id is None and secret not in repr(n) for n in old)


def test_notification_id_is_deterministic_per_event_and_recipient():
    one = notices.notification_id("/punte/intake", "e-1", "bc-dsp")
    assert one == notices.notification_id("/punte/intake", "e-1", "bc-dsp")
    assert one != notices.notification_id("/punte/intake", "e-1", "bc-isj")
    assert one != notices.notification_id("/punte/intake", "e-2", "bc-dsp")


def test_need_to_know_keeps_health_from_police_and_schools_to_school_items():
    from contracts.reference import need_to_know, risk_categories

    rules = need_to_know()
    health = {c.id for c in risk_categories().values() if c.group == "health"}
    assert health and not health & rules.visible["IPJ"] and not health & rules.visible["PL"]
    assert rules.visible["ISJ"] == rules.visible["CJRAE"] == {
        "special_educational_needs", "school_absenteeism", "bullying", "online_violence"}
    assert rules.visible["DGASPC"] == set(risk_categories())
    assert health <= rules.protected_in_messages


def test_protected_categories_are_not_named_and_no_category_reads_as_a_reported_risk():
    from contracts.reference import risk_categories
    from services.notification.domain.messages import summarise

    mail = summarise("case-informed", "P1", ["neglect", "pregnant_minor"], "case-1", risk_categories(),
                     protected={"pregnant_minor"})
    assert mail.ro == "Caz nou, spre informare (P1): neglijare, categorie protejată (detalii în Punte). Caz case-1"
    assert "minor" not in mail.en.lower()
    nothing = summarise("case-informed", "P1", [], "case-1", risk_categories())
    assert "risc semnalat" in nothing.ro and "risk reported" in nothing.en
