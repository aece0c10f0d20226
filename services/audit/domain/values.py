"""Where a recorded value is sealed, and what the trail learns from the network's own
events about keeping values (decision 0016). Pure: no I/O.

Every value is sealed under the data key of one scope:
  case:<case_id>      the record names a case (its body's ``case_id``), or names a report
                      the trail knows joined a case
  report:<report_id>  an ingress report (its ``ce_id``), or a record about a report not
                      (yet) in a case: an outcome answering it, a dead letter of it
  network             anything else (checkpoints, access events without a case)
Erasing a case erases "case:<id>" and each of its reports' "report:<id>" scopes."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

NETWORK_SCOPE = "network"
REPORT_TYPES = ("ro.punte.report.submitted.",)
CASE_OPENED = "ro.punte.case.opened.v1"
CASE_REPORT_ADDED = "ro.punte.case.report-added.v1"
CASE_CLOSED = "ro.punte.case.closed.v1"
CASE_REOPENED = "ro.punte.case.reopened.v1"
OUTCOME = "ro.punte.outcome.v1"
DEAD_LETTER = "ro.punte.deadletter.v1"
# The network's events the trail acts on (links, erasures): only when the network signed them.
# Matched by type whatever the topic (case.closed comes from referral, on punte.referrals).
ACTED_ON = (CASE_OPENED, CASE_REPORT_ADDED, CASE_CLOSED, CASE_REOPENED, OUTCOME)


def case_scope(case_id: str) -> str:
    return f"case:{case_id}"


def report_scope(report_id: str) -> str:
    return f"report:{report_id}"


def case_of_scope(scope: str | None, links: Mapping[str, str]) -> str | None:
    """The case a scope's values belong to, if the trail knows it."""
    if scope is None:
        return None
    kind, _, name = scope.partition(":")
    if kind == "case":
        return name
    if kind == "report":
        return links.get(name)
    return None


def is_report(event_type: str | None) -> bool:
    return bool(event_type) and event_type.startswith(REPORT_TYPES)


def _text(body: Mapping[str, Any], key: str) -> str | None:
    found = body.get(key)
    return found if isinstance(found, str) and found else None


def report_named(event_type: str | None, event_id: str | None, body: Mapping[str, Any]) -> str | None:
    """The report a record is, or is about: an ingress report's own id, the report an
    outcome answers, the report a dead letter holds."""
    if is_report(event_type):
        return event_id
    if event_type == OUTCOME and is_report(_text(body, "subject_type")):
        return _text(body, "subject_id")
    if event_type == DEAD_LETTER:
        headers = body.get("headers")
        if isinstance(headers, Mapping) and is_report(headers.get("ce_type")):
            inner = headers.get("ce_id")
            return inner if isinstance(inner, str) and inner else None
    return _text(body, "report_id")


def scope_of(event_type: str | None, event_id: str | None, body: Mapping[str, Any],
             links: Mapping[str, str]) -> str:
    """The scope a record's value is sealed under. An ingress report is sealed by its own
    id whatever case its body claims (the sender writes the body); the case it joins
    erases it with the case."""
    if not is_report(event_type):
        case_id = _text(body, "case_id")
        if case_id:
            return case_scope(case_id)
    report_id = report_named(event_type, event_id, body)
    if report_id:
        return case_scope(links[report_id]) if report_id in links and not is_report(event_type) \
            else report_scope(report_id)
    return NETWORK_SCOPE


def report_link(event_type: str | None, body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(report id, case id) from a case.opened or case.report-added."""
    if event_type in (CASE_OPENED, CASE_REPORT_ADDED):
        report_id, case_id = _text(body, "report_id"), _text(body, "case_id")
        if report_id and case_id:
            return report_id, case_id
    return None


@dataclass(frozen=True)
class Closed:
    """A case closed: its scope and its reports' are erased by the closed-case rule."""

    case_id: str
    closed_at: datetime
    report_ids: tuple[str, ...]

    def scopes(self, linked: Iterable[str] = ()) -> list[str]:
        """The case's scope and its reports': those the closing names and those the trail
        linked to the case (a closing may name none)."""
        reports = dict.fromkeys([*self.report_ids, *linked])
        return [case_scope(self.case_id), *(report_scope(r) for r in reports)]


def closed_case(event_type: str | None, body: Mapping[str, Any]) -> Closed | None:
    """A ro.punte.case.closed.v1's facts ({"case_id", "closed_at", "report_ids", ...}); None
    for any other record or one without a readable case and time."""
    if event_type != CASE_CLOSED:
        return None
    case_id, closed_at = _text(body, "case_id"), _text(body, "closed_at")
    if not case_id or not closed_at:
        return None
    try:
        when = datetime.fromisoformat(closed_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    reports = body.get("report_ids")
    report_ids = tuple(r for r in reports if isinstance(r, str) and r) if isinstance(reports, list) else ()
    return Closed(case_id, when, report_ids)


def reopened_case(event_type: str | None, body: Mapping[str, Any]) -> str | None:
    """The case a ro.punte.case.reopened.v1 reopens: its pending erasures are cancelled."""
    return _text(body, "case_id") if event_type == CASE_REOPENED else None


def refused_report(event_type: str | None, body: Mapping[str, Any]) -> str | None:
    """The report an outcome refused (it never became or joined a case), if it is one."""
    if event_type == OUTCOME and body.get("status") == "rejected" and is_report(_text(body, "subject_type")):
        return _text(body, "subject_id")
    return None
