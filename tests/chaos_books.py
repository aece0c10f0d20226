"""What a chaos run's books must show, whichever broker it ran on (bench/chaos.py): every
report answered once, every case and notice once, every dead letter explained, the audit
trail verified."""
from __future__ import annotations

from typing import Any

from bench import chaos


def assert_the_books_balance(summary: dict[str, Any], shown: str) -> None:
    books = summary["books"]
    # Every report answered once; every malformed one refused with its code.
    assert summary["sent"]["redelivered"] > 0 and summary["sent"]["malformed"] >= len(chaos.MALFORMATIONS)
    assert books["lost"] == [] and books["doubled"] == [], shown
    assert books["wrong_codes"] == [] and books["misrouted"] == []
    assert summary["outcomes"]["rejected"] == summary["sent"]["malformed"]

    # Every case once, referred once, its lead and the informed told once.
    assert books["new_cases"] > 0
    for check in ("accepted_without_case", "report_in_two_cases", "initial_referral_missing",
                  "initial_referral_doubled", "notice_missing", "notice_doubled", "report_added_notices_wrong"):
        assert books[check] == [], f"{check}: {books[check]}"
    assert summary["duplicate_rows"] == {}

    # Dead letters: one for each message refused at the door, none else.
    assert books["dead_letters"] == books["dead_letters_expected"] > 0
    assert books["dead_letters_missing"] == books["dead_letters_doubled"] == books["dead_letters_unexplained"] == []

    # The audit trail holds every message the broker holds.
    assert summary["audit"]["state"] == "verified", shown
    assert summary["audit"]["not_audited"] == 0 and summary["audit"]["problems"] == []
    assert summary["balanced"]
