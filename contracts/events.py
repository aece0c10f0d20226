"""Python models of the event payloads (the ``data`` of each CloudEvent).

The JSON Schemas in ``contracts/schemas/<type>.json`` are authoritative; these models mirror
them for the services, and ``tests/unit/test_contracts.py`` keeps both in agreement.
"""
from __future__ import annotations

from datetime import date
from enum import Enum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventType(str, Enum):
    """CloudEvents ``type`` values; the version is part of the type."""

    REPORT_SUBMITTED = "ro.punte.report.submitted.v1"
    REFERRAL_ACCEPT = "ro.punte.referral.accept.v1"
    OUTCOME = "ro.punte.outcome.v1"
    CASE_OPENED = "ro.punte.case.opened.v1"
    REFERRAL_REQUESTED = "ro.punte.referral.requested.v1"
    REFERRAL_ACCEPTED = "ro.punte.referral.accepted.v1"
    CASE_NOTIFICATION = "ro.punte.case.notification.v1"
    DEAD_LETTER = "ro.punte.deadletter.v1"


class Urgency(str, Enum):
    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"


# --- ingress: sent by institutions on their own ingress topic --------------------------


class Reporter(Contract):
    institution: str = Field(description="Institution id from contracts/reference/institutions.csv")
    role: str = Field(description="Professional role of the person reporting, e.g. social-worker")


class ChildIdentity(Contract):
    """Who the report is about. A CNP when known, otherwise name and birth date."""

    cnp: str | None = Field(default=None, pattern=r"^[1-9][0-9]{12}$")
    given_name: str | None = None
    family_name: str | None = None
    birth_date: date | None = None
    uat_siruta: int = Field(description="SIRUTA code of the UAT where the child lives")


class ReportSubmitted(Contract):
    reporter: Reporter
    channel: Literal[
        "helpline-119", "school", "family-doctor", "community-nurse", "police-patrol",
        "social-worker", "self-referral", "anonymous",
    ]
    child: ChildIdentity
    categories: list[str] = Field(min_length=1, description="Risk category ids")
    description: str = Field(min_length=1, max_length=4000)
    immediate_danger: bool = False
    occurred_at: AwareDatetime | None = None


class ReferralAccept(Contract):
    referral_id: str
    note: str | None = Field(default=None, max_length=2000)


# --- outcomes: on the sender's delivery topic ------------------------------------------


class Reason(Contract):
    code: str
    message_ro: str
    message_en: str


class Outcome(Contract):
    """The answer to every inbound message, on its sender's delivery topic."""

    subject_id: str = Field(description="ce_id of the inbound message this answers")
    subject_type: str | None = Field(description="ce_type of the inbound message, when readable")
    status: Literal["accepted", "rejected"]
    reason: Reason | None = None
    case_id: str | None = None
    referral_id: str | None = None
    urgency: Urgency | None = None
    informed: list[str] = Field(default_factory=list)


# --- internal, authoritative topics (never read by institutions) ----------------------


class CaseOpened(Contract):
    case_id: str
    child_ref: str = Field(description="Keyed pseudonym of the child; never the CNP or name")
    uat_siruta: int
    categories: list[str]
    urgency: Urgency
    lead: str
    informed: list[str]
    report_id: str
    reporter: Reporter
    received_at: AwareDatetime


class ReferralRequested(Contract):
    referral_id: str
    case_id: str
    referrer: str = Field(description="Institution that reported the case")
    to: str = Field(description="Institution asked to take the case (the lead)")
    urgency: Urgency
    categories: list[str]
    requested_at: AwareDatetime


class ReferralAccepted(Contract):
    referral_id: str
    case_id: str
    referrer: str
    to: str
    accepted_at: AwareDatetime
    note: str | None = None


# --- deliveries: on an institution's own delivery topic -------------------------------


class CaseNotification(Contract):
    """What an institution is told about a case it takes part in (need-to-know only)."""

    notification_id: str
    case_id: str
    referral_id: str | None = None
    kind: Literal["referral-requested", "case-informed", "referral-accepted"]
    urgency: Urgency
    categories: list[str]
    recipient: str
    summary_ro: str
    summary_en: str


# --- dead letters ----------------------------------------------------------------------


class DeadLetter(Contract):
    reason: Reason
    service: str
    topic: str
    partition: int
    offset: int
    headers: dict[str, str]
    payload_base64: str
    failed_at: AwareDatetime


PAYLOADS: dict[EventType, type[Contract]] = {
    EventType.REPORT_SUBMITTED: ReportSubmitted,
    EventType.REFERRAL_ACCEPT: ReferralAccept,
    EventType.OUTCOME: Outcome,
    EventType.CASE_OPENED: CaseOpened,
    EventType.REFERRAL_REQUESTED: ReferralRequested,
    EventType.REFERRAL_ACCEPTED: ReferralAccepted,
    EventType.CASE_NOTIFICATION: CaseNotification,
    EventType.DEAD_LETTER: DeadLetter,
}
