"""A signed flood of P0 reports must not page on-call staff without end: at most a
configured number of P0 pages per person per window; the rest wait in the inbox and reach
the person as one digest e-mail when the window ends (services/notification/domain/dispatch.py)."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

from services.notification.domain.dispatch import Outgoing, PageCap, limit_pages, plan
from services.notification.domain.notices import Notice
from tests.unit.test_dispatch import config

# 11:03 in Bucharest; the 10-minute window runs 11:00-11:10.
NOW = datetime(2026, 11, 23, 9, 3, tzinfo=timezone.utc)
CAP = PageCap(pages=5, window=timedelta(minutes=10))


def p0(n: int) -> Notice:
    return Notice("das-x", "referral-requested", f"case-{n}", f"ref-{n}", "P0", ("neglect",))


def burst(count: int, now: datetime, paged: Counter) -> list[tuple[Outgoing, ...]]:
    """``count`` P0 notices handled one after another at ``now``; what each was sent as.
    ``paged`` counts each person's pages in the window, as the database would."""
    recipients = config()
    sent_per_notice = []
    for n in range(count):
        wanted = plan(p0(n), recipients, now)
        assert wanted.alert
        decided = limit_pages(wanted.messages, paged, CAP, now)
        paged.update({m.person for m in decided.sent if m.purpose == "alert"})
        sent_per_notice.append(decided.sent + decided.held)
    return sent_per_notice


def test_a_burst_of_p0_pages_the_person_on_call_at_most_five_times_per_window():
    paged: Counter = Counter()
    sent = burst(40, NOW, paged)
    alerts = [[(m.person, m.channel) for m in one if m.purpose == "alert"] for one in sent]
    assert alerts[:5] == [[("ana", "email"), ("ana", "sms")]] * 5
    assert alerts[5:] == [[]] * 35, "no more pages in this window"
    # Every held alert becomes a line of one digest e-mail at the window's end (no SMS):
    # "35 new notifications" rather than 35 pages.
    held = [[m for m in one if m.person == "ana"] for one in sent[5:]]
    assert all(one == [Outgoing("ana", "email", "ana@das-x.example.invalid", "digest",
                                datetime(2026, 11, 23, 9, 10, tzinfo=timezone.utc))] for one in held)
    assert paged == {"ana": 5}


def test_people_who_are_not_paged_are_told_as_before():
    sent = burst(12, NOW, Counter())
    for one in sent:
        others = sorted((m.person, m.channel, m.purpose) for m in one if m.person != "ana")
        assert others == [("dan", "email", "notice"), ("dan", "sms", "notice"), ("ion", "email", "notice"),
                          ("team:das-x", "email", "notice")]


def test_the_next_window_pages_again():
    paged: Counter = Counter()
    burst(8, NOW, paged)
    later = NOW + timedelta(minutes=10)
    decided = limit_pages(plan(p0(99), config(), later).messages, Counter(), CAP, later)
    assert [(m.person, m.channel) for m in decided.sent if m.purpose == "alert"] == [("ana", "email"), ("ana", "sms")]
    assert decided.held == ()


def test_windows_are_clock_aligned():
    assert CAP.window_start(NOW) == datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
    assert CAP.window_end(NOW) == datetime(2026, 11, 23, 9, 10, tzinfo=timezone.utc)
    edge = datetime(2026, 11, 23, 9, 10, tzinfo=timezone.utc)
    assert CAP.window_start(edge) == edge
