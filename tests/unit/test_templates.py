"""The e-mail and SMS a notice becomes: Romanian first, English after, the inbox link,
the deadline and the do-not-contact warning, and nothing that identifies the child."""
from __future__ import annotations

import pytest

from contracts.reference import risk_categories
from services.notification.domain.messages import HEADLINES, summarise
from services.notification.domain.templates import (
    EN_SEPARATOR,
    SMS_LIMIT,
    gsm_ascii,
    gsm_length,
    render,
    sms_text,
)

LABELS = risk_categories()
CASE = "case-0123456789abcdef"
LINK = f"https://punte.example.ro/inbox/{CASE}"
# Synthetic child data that must never reach an e-mail or SMS.
CNP = "5100101040019"


def rendered(kind="referral-requested", urgency="P1", deadline=None, do_not_contact=False,
             categories=("neglect",)):
    s = summarise(kind, urgency, categories, CASE, LABELS, do_not_contact)
    return render(kind, urgency, s.ro, s.en, CASE, LINK, deadline, do_not_contact)


def halves(text: str) -> tuple[str, str]:
    ro, sep, en = text.partition(f"\n{EN_SEPARATOR}\n")
    assert sep, "the English part follows the separator"
    return ro, en


@pytest.mark.parametrize("urgency", ["P0", "P1", "P2", "P3"])
def test_subject_carries_urgency_headline_and_case(urgency):
    r = rendered(urgency=urgency)
    assert r.subject == f"[Punte {urgency}] Trimitere nouă / New referral · {CASE}"


@pytest.mark.parametrize("kind", sorted(HEADLINES))
def test_every_kind_renders_romanian_first_then_english(kind):
    r = rendered(kind=kind)
    assert r.subject.startswith("[Punte P1] " + HEADLINES[kind][0])
    ro, en = halves(r.text)
    assert HEADLINES[kind][0] in ro and HEADLINES[kind][1] in en
    assert "neglijare" in ro and "neglect" in en and "neglijare" not in en
    assert f"Cazul {CASE} în inboxul Punte:" in ro and f"Case {CASE} in the Punte inbox:" in en
    assert LINK in ro and LINK in en


def test_p0_opens_with_the_emergency_line():
    ro, en = halves(rendered(urgency="P0").text)
    assert ro.startswith("URGENȚĂ P0") and en.lstrip().startswith("EMERGENCY P0")


def test_deadline_line_only_when_given():
    ro, en = halves(rendered(deadline="2025-03-01 12:00 (ora României)").text)
    assert "Termen: 2025-03-01 12:00 (ora României)" in ro
    assert "Deadline: 2025-03-01 12:00 (ora României)" in en
    assert "Termen:" not in rendered().text and "Deadline:" not in rendered().text


def test_do_not_contact_warning_only_when_set():
    ro, en = halves(rendered(do_not_contact=True).text)
    assert "ATENȚIE: NU contactați familia." in ro
    assert "WARNING: Do NOT contact the household." in en
    plain = rendered().text
    assert "ATENȚIE" not in plain and "WARNING" not in plain and "NU contactați" not in plain


def test_refuses_a_cnp_like_number_and_bad_input():
    s = summarise("referral-requested", "P1", ["neglect"], CASE, LABELS)
    with pytest.raises(ValueError, match="CNP"):
        render("referral-requested", "P1", s.ro + f" CNP {CNP}", s.en, CASE, LINK, None, False)
    with pytest.raises(ValueError, match="CNP"):
        render("referral-requested", "P1", s.ro, s.en, CASE, LINK, CNP, False)
    with pytest.raises(ValueError, match="urgency"):
        render("referral-requested", "P9", s.ro, s.en, CASE, LINK, None, False)
    with pytest.raises(ValueError, match="kind"):
        render("gossip", "P1", s.ro, s.en, CASE, LINK, None, False)
    with pytest.raises(ValueError, match="link"):
        render("referral-requested", "P1", s.ro, s.en, CASE, "javascript:alert(1)", None, False)
    with pytest.raises(ValueError, match="case id"):
        render("referral-requested", "P1", s.ro, s.en, "case-1\r\nBcc: x@y.ro", LINK, None, False)


def test_an_all_digit_case_id_is_not_mistaken_for_a_cnp():
    case = "case-1234567890123456"
    s = summarise("case-informed", "P2", ["neglect"], case, LABELS)
    assert case in render("case-informed", "P2", s.ro, s.en, case, LINK, None, False).text


def test_gsm_ascii_strips_romanian_diacritics():
    assert gsm_ascii("ăâîșțĂÂÎȘȚ şţŞŢ") == "aaistAAIST stST"
    assert gsm_ascii("Termen depășit — „urgent”") == 'Termen depasit - "urgent"'


def test_sms_reads_in_romanian_with_urgency_case_and_link():
    text = sms_text("referral-overdue", "P0", CASE, LINK, "2025-03-01 12:00", True)
    assert text == (f"Punte P0: Termen depasit. Caz {CASE}. Termen 2025-03-01 12:00. "
                    f"NU contactati familia. {LINK}")
    assert len(text) <= SMS_LIMIT and text.isascii()


@pytest.mark.parametrize("kind", sorted(HEADLINES))
@pytest.mark.parametrize("link_length", [30, 60, 100])
def test_sms_always_fits_one_segment(kind, link_length):
    link = "https://punte.example.ro/i/" + "x" * (link_length - 27)
    text = sms_text(kind, "P1", CASE, link, "2025-03-01 12:00 ora Romaniei", True)
    assert len(text) <= SMS_LIMIT and gsm_length(text) <= SMS_LIMIT and text.isascii()
    # What must never be cut: urgency, case, warning, link.
    assert text.startswith("Punte P1") and f"Caz {CASE}." in text
    assert "NU contactati familia." in text and text.endswith(link)


def test_sms_with_a_link_too_long_is_refused():
    with pytest.raises(ValueError, match="too long"):
        sms_text("referral-requested", "P1", CASE, "https://punte.example.ro/" + "x" * 140)
