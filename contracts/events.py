"""Python models of the event payloads (the ``data`` of each CloudEvent).

The JSON Schemas in ``contracts/schemas/<type>.json`` are authoritative; these models mirror
them for the services, and ``tests/unit/test_contracts.py`` keeps both in agreement.
"""
from __future__ import annotations

from datetime import date
from enum import Enum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# A risk category id: reports carry its shape, intake checks it against the reference list.
CategoryId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,59}$")]
# A CNP's shape; intake checks its check digit and birth date.
Cnp = Annotated[str, Field(pattern=r"^[1-9][0-9]{12}$")]
Channel = Literal[
    "helpline-119", "school", "family-doctor", "community-nurse", "police-patrol",
    "social-worker", "self-referral", "anonymous",
]


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventType(str, Enum):
    """CloudEvents ``type`` values; the version is part of the type."""

    REPORT_SUBMITTED = "ro.punte.report.submitted.v1"
    REPORT_SUBMITTED_V2 = "ro.punte.report.submitted.v2"
    REPORT_SUBMITTED_V3 = "ro.punte.report.submitted.v3"
    REFERRAL_ACCEPT = "ro.punte.referral.accept.v1"
    REFERRAL_COMMAND = "ro.punte.referral.command.v1"
    REFERRAL_REQUEST = "ro.punte.referral.request.v1"
    SERVICE_UPDATED = "ro.punte.service.updated.v1"
    OUTCOME = "ro.punte.outcome.v1"
    CASE_OPENED = "ro.punte.case.opened.v1"
    CASE_REPORT_ADDED = "ro.punte.case.report-added.v1"
    CASE_CLOSED = "ro.punte.case.closed.v1"
    CASE_REOPENED = "ro.punte.case.reopened.v1"
    REFERRAL_REQUESTED = "ro.punte.referral.requested.v1"
    REFERRAL_ACCEPTED = "ro.punte.referral.accepted.v1"
    REFERRAL_TRANSITIONED = "ro.punte.referral.transitioned.v1"
    REFERRAL_OVERDUE = "ro.punte.referral.overdue.v1"
    CASE_NOTIFICATION = "ro.punte.case.notification.v1"
    DEAD_LETTER = "ro.punte.deadletter.v1"
    DEAD_LETTER_V2 = "ro.punte.deadletter.v2"
    ACCESS = "ro.punte.access.v1"
    AUDIT_CHECKPOINT = "ro.punte.audit.checkpoint.v1"
    CASE_RESTRICTED = "ro.punte.case.restricted.v1"


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

    cnp: Cnp | None = None
    given_name: str | None = None
    family_name: str | None = None
    birth_date: date | None = None
    uat_siruta: int = Field(description="SIRUTA code of the UAT where the child lives")


class ReportSubmitted(Contract):
    reporter: Reporter
    channel: Channel
    child: ChildIdentity
    categories: list[CategoryId] = Field(min_length=1, description="Risk category ids")
    description: str = Field(min_length=1, max_length=4000)
    immediate_danger: bool = False
    occurred_at: AwareDatetime | None = None


CountyCode = Annotated[str, Field(pattern=r"^(AB|AG|AR|B|BC|BH|BN|BR|BT|BV|BZ|CJ|CL|CS|CT|CV|DB|DJ|GJ|GL|GR|HD|HR|IF|IL|IS|MH|MM|MS|NT|OT|PH|SB|SJ|SM|SV|TL|TM|TR|VL|VN|VS)$")]


class Person(Contract):
    """Someone in the child's household, identified as well as the reporter can."""

    cnp: Cnp | None = None
    given_name: str | None = Field(default=None, max_length=100)
    family_name: str | None = Field(default=None, max_length=100)
    birth_date: date | None = None


class ChildIdentityV2(Contract):
    """A CNP when known; otherwise names with a birth date or an estimated age. Where the
    child lives: a UAT (SIRUTA) and the county; outside Bacău the county alone will do."""

    cnp: Cnp | None = None
    given_name: str | None = Field(default=None, max_length=100)
    family_name: str | None = Field(default=None, max_length=100)
    birth_date: date | None = None
    estimated_age_years: int | None = Field(default=None, ge=0, le=17)
    sex: Literal["F", "M", "unknown"] = "unknown"
    uat_siruta: int | None = Field(default=None, description="SIRUTA code of the child's UAT")
    county: CountyCode = Field(default="BC", description="County code (auto index) where the child lives")
    address: str | None = Field(default=None, max_length=300,
                                description="Kept encrypted in intake; never leaves it")


class Carer(Person):
    relationship: Literal["mother", "father", "grandparent", "relative", "foster-carer",
                          "legal-guardian", "other"]


class Household(Contract):
    carer: Carer | None = None
    siblings: list[Person] = Field(default_factory=list, max_length=20)
    alleged_abuser_in_household: bool = False
    domestic_violence: bool = False


class Risk(Contract):
    category: CategoryId = Field(description="Risk category id (contracts/reference/risk-categories.yaml)")
    indicators: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=30)


class ObservationSheet(Contract):
    """The observation sheet (fișa de observație, HG 691/2015): yes/no items in six
    sections, item ids from contracts/reference/observation-sheet.yaml."""

    sheet_number: str = Field(max_length=50)
    observed_on: date
    economic: dict[str, bool] = Field(default_factory=dict)
    social: dict[str, bool] = Field(default_factory=dict)
    health: dict[str, bool] = Field(default_factory=dict)
    education: dict[str, bool] = Field(default_factory=dict)
    housing: dict[str, bool] = Field(default_factory=dict)
    risk_behaviours: dict[str, bool] = Field(default_factory=dict)


class ReportSubmittedV2(Contract):
    reporter: Reporter
    channel: Channel
    child: ChildIdentityV2
    household: Household = Field(default_factory=Household)
    place_of_occurrence: Literal["family", "school", "residential-service", "foster-carer",
                                 "public-space", "online", "other", "unknown"] = "unknown"
    risks: list[Risk] = Field(min_length=1, max_length=10)
    description: str = Field(min_length=1, max_length=4000)
    immediate_danger: bool = False
    already_informed: list[Literal["112", "police", "dgaspc", "spas", "school", "family-doctor",
                                   "other"]] = Field(default_factory=list)
    observation_sheet: ObservationSheet | None = None
    occurred_at: AwareDatetime | None = None


# --- report v3: sealed at the source -----------------------------------------------------
# What identifies the child or tells the story travels as one JWE (RFC 7516) that only
# intake can open; what routing needs stays in clear. See docs/contracts.md, "Sealing a report".

# A JWE in compact serialization: five base64url parts, the second (the encrypted key) may be empty.
CompactJwe = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
                                  max_length=65536)]


class ChildWhereabouts(Contract):
    """Where the child lives, as routing needs it: a UAT (SIRUTA) and the county."""

    uat_siruta: int | None = Field(default=None, description="SIRUTA code of the child's UAT")
    county: CountyCode = Field(default="BC", description="County code (auto index) where the child lives")


class ReportedRisk(Contract):
    category: CategoryId = Field(description="Risk category id (contracts/reference/risk-categories.yaml)")


class ReportSubmittedV3(Contract):
    reporter: Reporter
    channel: Channel
    child: ChildWhereabouts
    place_of_occurrence: Literal["family", "school", "residential-service", "foster-carer",
                                 "public-space", "online", "other", "unknown"] = "unknown"
    risks: list[ReportedRisk] = Field(min_length=1, max_length=10)
    immediate_danger: bool = False
    already_informed: list[Literal["112", "police", "dgaspc", "spas", "school", "family-doctor",
                                   "other"]] = Field(default_factory=list)
    observation_sheet: ObservationSheet | None = None
    occurred_at: AwareDatetime | None = None
    sealed: CompactJwe = Field(description="JWE compact serialization to intake's key: "
                                           "ro.punte.report.sealed.v3 as UTF-8 JSON")


class SealedFor(Contract):
    """The report this plaintext belongs to: a sealed part copied into another report does
    not open there."""

    id: str = Field(min_length=1, max_length=200, description="The report's ce_id")
    institution: str = Field(description="The reporter's institution id (the sender)")


class SealedChild(Contract):
    cnp: Cnp | None = None
    given_name: str | None = Field(default=None, max_length=100)
    family_name: str | None = Field(default=None, max_length=100)
    birth_date: date | None = None
    estimated_age_years: int | None = Field(default=None, ge=0, le=17)
    sex: Literal["F", "M", "unknown"] = "unknown"
    address: str | None = Field(default=None, max_length=300)


class SealedReport(Contract):
    """The plaintext of a v3 report's ``sealed`` member (schema ro.punte.report.sealed.v3)."""

    report: SealedFor
    child: SealedChild
    household: Household = Field(default_factory=Household)
    description: str = Field(min_length=1, max_length=4000)
    indicators: dict[CategoryId, Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=30)]] = Field(
        default_factory=dict, description="Free-text indicators by risk category")
    notes: str | None = Field(default=None, max_length=4000)


class ReferralAccept(Contract):
    """Kept for v1 senders: the same as a referral.command with command "accept"."""

    referral_id: str
    note: str | None = Field(default=None, max_length=2000)


ReferralCommandName = Literal[
    "acknowledge", "accept", "reject", "start", "hold", "resume", "complete", "fail",
    "forward", "cancel", "mark-error", "note", "claim", "assign",
]


class ActingPerson(Contract):
    """Who, inside the sending institution, acts (from its own system's sign-in)."""

    person: str = Field(max_length=100, description="The person's user id in the institution")
    roles: list[Literal["case-manager", "supervisor", "coordinator"]] = Field(default_factory=list)


class ReferralCommand(Contract):
    """Any step on a referral, sent by the receiving institution (or, for cancel and
    mark-error, by the referrer; notes by either)."""

    referral_id: str
    command: ReferralCommandName
    actor: ActingPerson | None = None
    reason: str | None = Field(default=None, min_length=1, max_length=1000,
                               description="Required for reject, hold, fail, forward, cancel, mark-error: a code "
                                           "of contracts/reference/referral-reasons.yaml listed for the command")
    outcome: str | None = Field(default=None, description="Outcome code (referral-outcomes.yaml), for complete")
    note: str | None = Field(default=None, max_length=4000,
                             description="Progress note, feedback or a reason's details: kept sealed in the case file")
    assignee: str | None = Field(default=None, max_length=100, description="For assign")
    forward_to: str | None = Field(default=None, description="Institution id, for forward")


class Consent(Contract):
    """Consent to a prevention referral (P2/P3); P0/P1 proceed on the statutory basis."""

    given_by: Literal["parent", "legal-guardian", "carer", "child"]
    purpose: str = Field(min_length=1, max_length=500)
    given_on: date
    expires_on: date


class ReferralRequest(Contract):
    """An institution refers a child's case to another institution or to one of its services."""

    case_id: str
    to: str | None = Field(default=None, description="Institution id; or give service_id")
    service_id: str | None = Field(default=None, description="From the service directory")
    kind: Literal["service", "information-request"] = "service"
    note: str | None = Field(default=None, max_length=4000)
    consent: Consent | None = None


class ServiceUpdated(Contract):
    """A provider keeps its entry in the service directory current, or adds one of its own
    services (then name and categories are required)."""

    service_id: str
    name: str | None = Field(default=None, min_length=1, max_length=200)
    nomenclature_code: str | None = Field(default=None, max_length=50)
    categories: list[CategoryId] | None = None
    capacity: int | None = Field(default=None, ge=0)
    occupancy: int | None = Field(default=None, ge=0)
    waiting: int | None = Field(default=None, ge=0)
    accepting: bool | None = Field(default=None, description="Omitted: unchanged")


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
    merged: bool = Field(default=False, description="The report joined an open case of the same child")
    possible_duplicate_of: list[str] = Field(
        default_factory=list, description="Cases a person should check: same child by name, birth and UAT")


# --- internal, authoritative topics (never read by institutions) ----------------------


class CaseOpened(Contract):
    case_id: str
    child_ref: str = Field(description="Keyed pseudonym of the child; never the CNP or name")
    uat_siruta: int | None
    categories: list[str]
    urgency: Urgency
    lead: str
    informed: list[str]
    report_id: str
    reporter: Reporter
    received_at: AwareDatetime
    county: str = "BC"
    do_not_contact: bool = Field(
        default=False, description="No channel may contact the household (abuser lives with the child)")
    place_of_occurrence: str | None = None
    deadlines: dict[str, AwareDatetime] = Field(
        default_factory=dict, description="Due times from receipt by urgency: acknowledge, first_action, ...")
    sibling_cases: list[str] = Field(default_factory=list)
    possible_duplicate_of: list[str] = Field(default_factory=list)


class CaseReportAdded(Contract):
    """A new report about a child with an open case joined that case."""

    case_id: str
    report_id: str
    reporter: Reporter
    categories: list[str] = Field(description="The case's categories after the report")
    new_categories: list[str]
    urgency: Urgency
    lead: str
    received_at: AwareDatetime


class CaseClosed(Contract):
    """The case's lead closed it (referral, once the plan is done): from now on the
    closed-case retention period runs."""

    case_id: str
    closed_at: AwareDatetime
    closed_by: str = Field(description="Institution id of the lead that closed the case")
    reason: str = Field(description="A code of contracts/reference/case-closure-reasons.yaml")
    report_ids: list[str] = Field(description="Every report the case holds (their ce_id), as referral knows them")


class CaseReopened(Contract):
    """The case's lead reopened a closed case: its pending erasures are cancelled."""

    case_id: str
    reopened_at: AwareDatetime
    reopened_by: str = Field(description="Institution id of the lead that reopened the case")


class CaseRestricted(Contract):
    """The case's processing is restricted (GDPR art. 18), or the restriction lifted: while
    restricted, the case is only stored and exported to the person; nothing is sent about it
    and no command or new referral is taken (docs/decisions/0019-data-subject-rights.md)."""

    case_id: str
    restricted: bool = Field(description="True: restricted from now on; false: the restriction is lifted")
    at: AwareDatetime
    by: str = Field(description="Institution id of the lead whose data-protection officer decided")


class ReferralRequested(Contract):
    referral_id: str
    case_id: str
    referrer: str = Field(description="Institution that reported the case")
    to: str = Field(description="Institution asked to take the case (the lead)")
    urgency: Urgency
    categories: list[str]
    requested_at: AwareDatetime
    kind: Literal["case", "service", "information-request"] = "case"
    service_id: str | None = None
    forwarded_from: str | None = Field(default=None, description="The referral this one continues")
    legal_basis: Literal["statutory-duty", "consent", "consent-pending"] = "statutory-duty"
    consent: Consent | None = None
    deadlines: dict[str, AwareDatetime] = Field(default_factory=dict)
    do_not_contact: bool = Field(
        default=False, description="No channel may contact the household (from the case)")


class ReferralTransitioned(Contract):
    """Every step of a referral, for both sides and the audit trail."""

    referral_id: str
    case_id: str
    referrer: str
    to: str
    urgency: Urgency
    command: str
    from_state: str
    to_state: str
    actor_institution: str | None = Field(description="None when the network acted (deadlines)")
    actor_person: str | None = None
    owner: str | None = Field(default=None, description="Case manager holding the referral")
    reason: str | None = Field(default=None, description="A code of contracts/reference/referral-reasons.yaml")
    outcome: str | None = None
    note: str | None = Field(default=None, description="Deprecated: always null since issue #11 (see note_id)")
    note_id: str | None = Field(
        default=None, description="The step added a note to the case file: read it through referral's API")
    forwarded_to: str | None = Field(default=None, description="New referral id, for forward")
    at: AwareDatetime


class ReferralOverdue(Contract):
    """A step of a referral missed its deadline; who is told, by escalation level."""

    referral_id: str
    case_id: str
    referrer: str
    to: str
    urgency: Urgency
    step: Literal["acknowledge", "decide", "first_contact", "outcome"]
    due_at: AwareDatetime
    level: int = Field(ge=1, le=2, description="1: the receiving institution's supervisor; 2: also the DGASPC coordinator")
    escalate_to: list[str] = Field(description="Institutions told")


class ReferralAccepted(Contract):
    referral_id: str
    case_id: str
    referrer: str
    to: str
    accepted_at: AwareDatetime
    note: str | None = Field(default=None, description="Deprecated: never sent (notes stay in the case file)")


# --- deliveries: on an institution's own delivery topic -------------------------------


class CaseNotification(Contract):
    """What an institution is told about a case it takes part in (need-to-know only)."""

    notification_id: str
    case_id: str
    referral_id: str | None = None
    kind: Literal["referral-requested", "case-informed", "referral-accepted", "report-added",
                  "referral-updated", "referral-overdue", "referral-returned", "case-accessed"]
    urgency: Urgency
    categories: list[str]
    recipient: str
    summary_ro: str
    summary_en: str
    do_not_contact: bool = False
    state: str | None = Field(default=None, description="The referral's state after the step")
    outcome: str | None = Field(default=None, description="Outcome code, when the referral completed")
    note: str | None = Field(default=None, description="Deprecated: always null since issue #11 (see note_id)")
    reason: str | None = Field(default=None, description="Why: a code of contracts/reference/referral-reasons.yaml, "
                                                         "for a rejection, hold, failure, forward, cancel, error, return")
    forwarded_to: str | None = Field(default=None, description="The new referral, when it was forwarded")
    note_id: str | None = Field(
        default=None, description="The step added a note (progress, feedback, details of a reason) to the case "
                                  "file; an authorised reader opens it in referral's API, GET "
                                  "/v1/referrals/{referral_id} (notes), or from the web inbox")


# --- dead letters ----------------------------------------------------------------------


class DeadLetter(Contract):
    """Version 1 carried the message's body: read only in the audit trail of old messages."""

    reason: Reason
    service: str
    topic: str
    partition: int
    offset: int
    headers: dict[str, str]
    payload_base64: str
    failed_at: AwareDatetime


class DeadLetterV2(Contract):
    """Where a message a service could not process was, its digest and why; never its
    body, which the service keeps sealed until the dead-letter-body rule erases it."""

    reason: Reason
    service: str
    topic: str
    partition: int
    offset: int
    headers: dict[str, str] = Field(description="The failed message's ce_specversion, ce_id, ce_source, "
                                                "ce_type and ce_time headers, where present")
    value_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the message's value, hex")
    value_bytes: int = Field(ge=0, description="The value's size in bytes")
    body_kept: bool = Field(description="Whether the service keeps the body sealed, for a replay")
    failed_at: AwareDatetime


# --- access to personal data, and the audit log's checkpoints -------------------------


class AccessRecorded(Contract):
    """Someone read a case or searched the trail: who, for which institution, why, what."""

    actor: str = Field(description="The person's user id (token subject)")
    actor_institution: str | None = Field(description="None for auditors and operators")
    roles: list[str] = Field(default_factory=list)
    purpose: str = Field(min_length=1, max_length=200,
                         description="A code of contracts/reference/access-purposes.yaml (free text in "
                                     "events from before the list)")
    purpose_text: str | None = Field(default=None, max_length=200,
                                     description="The reader's own words, if any: kept in the trail only")
    service: str
    resource: str = Field(description="What was read, e.g. /v1/cases/case-…")
    case_id: str | None = None
    query: dict[str, str] = Field(default_factory=dict, description="An auditor's search terms")
    at: AwareDatetime
    break_glass: bool = Field(default=False, description="A sealed value was opened (the audit's break-glass): "
                                                        "the case's lead is told, whoever read it")


class AuditCheckpoint(Contract):
    """A signed checkpoint of the audit log (C2SP signed note), for witnesses and auditors."""

    origin: str
    size: int = Field(ge=0)
    root: str = Field(description="Base64 Merkle root (RFC 9162)")
    note: str = Field(description="The full signed note text")


PAYLOADS: dict[EventType, type[Contract]] = {
    EventType.REPORT_SUBMITTED: ReportSubmitted,
    EventType.REPORT_SUBMITTED_V2: ReportSubmittedV2,
    EventType.REPORT_SUBMITTED_V3: ReportSubmittedV3,
    EventType.REFERRAL_ACCEPT: ReferralAccept,
    EventType.REFERRAL_COMMAND: ReferralCommand,
    EventType.REFERRAL_REQUEST: ReferralRequest,
    EventType.SERVICE_UPDATED: ServiceUpdated,
    EventType.OUTCOME: Outcome,
    EventType.CASE_OPENED: CaseOpened,
    EventType.CASE_REPORT_ADDED: CaseReportAdded,
    EventType.CASE_CLOSED: CaseClosed,
    EventType.CASE_REOPENED: CaseReopened,
    EventType.REFERRAL_REQUESTED: ReferralRequested,
    EventType.REFERRAL_ACCEPTED: ReferralAccepted,
    EventType.REFERRAL_TRANSITIONED: ReferralTransitioned,
    EventType.REFERRAL_OVERDUE: ReferralOverdue,
    EventType.CASE_NOTIFICATION: CaseNotification,
    EventType.DEAD_LETTER: DeadLetter,
    EventType.DEAD_LETTER_V2: DeadLetterV2,
    EventType.ACCESS: AccessRecorded,
    EventType.AUDIT_CHECKPOINT: AuditCheckpoint,
    EventType.CASE_RESTRICTED: CaseRestricted,
}
