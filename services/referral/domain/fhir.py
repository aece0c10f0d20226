"""A referral as FHIR R4: a ``Bundle`` (type collection) holding the ``Task`` that tracks it
and the ``ServiceRequest`` it asks for (Gravity SDOH's closed-loop referral shape, which the
lifecycle follows: domain/referral.py).

Built from the referral as the reader may see it (the same view and need-to-know cut as
``GET /v1/referrals/{id}``), and only from codes: no note, no free text, no person. The
child is never named: the subject is the case id, the network's pseudonym for it, as an
identifier with no resource behind it. Plain dicts, so the service needs no FHIR library;
the tests validate the result with ``fhir.resources``. Pure."""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

BASE = "https://punte.ro/fhir"
INSTITUTION = f"{BASE}/sid/institution"
REFERRAL = f"{BASE}/sid/referral"
CASE = f"{BASE}/sid/case"
RISK_CATEGORY = f"{BASE}/CodeSystem/risk-category"  # contracts/reference/risk-categories.yaml
REFERRAL_KIND = f"{BASE}/CodeSystem/referral-kind"  # service | information-request
SERVICE = f"{BASE}/sid/service"  # contracts/reference/services.csv, the directory
REASON = f"{BASE}/CodeSystem/referral-reason"  # contracts/reference/referral-reasons.yaml
OUTCOME = f"{BASE}/CodeSystem/referral-outcome"  # contracts/reference/referral-outcomes.yaml
OUTPUT = f"{BASE}/CodeSystem/task-output"
MEDIA_TYPE = "application/fhir+json"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"{BASE}/referral")

# The lifecycle's states are FHIR Task's own codes, one for one.
TASK_STATUS = {s: s for s in ("requested", "received", "accepted", "rejected", "in-progress", "on-hold",
                              "completed", "failed", "cancelled", "entered-in-error")}
# What the request stands at while its Task does (ServiceRequest.status).
REQUEST_STATUS = {"requested": "active", "received": "active", "accepted": "active", "in-progress": "active",
                  "on-hold": "on-hold", "completed": "completed", "rejected": "revoked", "failed": "revoked",
                  "cancelled": "revoked", "entered-in-error": "entered-in-error"}
# Punte's urgency as FHIR request priority: P0 acts at once, P3 in the routine.
PRIORITY = {"P0": "stat", "P1": "asap", "P2": "urgent", "P3": "routine"}


def _organization(institution: str) -> dict[str, Any]:
    return {"type": "Organization", "identifier": {"system": INSTITUTION, "value": institution}}


def _coded(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code, **({"display": display} if display else {})}
    return {"coding": [coding]}


def _instant(value: datetime | str) -> str:
    return value if isinstance(value, str) else value.isoformat()


def _last_reason(history: list[Mapping[str, Any]]) -> str | None:
    """The code of the last step that gave one (a full view has the history; a summary not)."""
    return next((h["reason"] for h in reversed(history) if h.get("reason")), None)


def bundle(referral: Mapping[str, Any], category_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The FHIR R4 Bundle of ``referral``, a ``ReferralView`` as a dict. ``category_labels``
    (risk category -> label) gives the reason codes a display; codes alone without it."""
    labels = category_labels or {}
    referral_id, state = referral["referral_id"], referral["state"]
    task_id = str(uuid.uuid5(_NAMESPACE, f"Task/{referral_id}"))
    request_id = str(uuid.uuid5(_NAMESPACE, f"ServiceRequest/{referral_id}"))
    identifier = [{"system": REFERRAL, "value": referral_id}]
    subject = {"type": "Patient", "identifier": {"system": CASE, "value": referral["case_id"]}}
    priority = PRIORITY.get(referral["urgency"])

    service_request: dict[str, Any] = {
        "resourceType": "ServiceRequest", "id": request_id, "identifier": identifier,
        "status": REQUEST_STATUS[state], "intent": "order",
        "category": [_coded(REFERRAL_KIND, referral["kind"])],
        **({"priority": priority} if priority else {}),
        **({"code": _coded(SERVICE, referral["service_id"])} if referral.get("service_id") else {}),
        "subject": subject,
        "authoredOn": _instant(referral["requested_at"]),
        "requester": _organization(referral["referrer"]),
        "performer": [_organization(referral["to"])],
    }
    if referral["categories"]:
        service_request["reasonCode"] = [_coded(RISK_CATEGORY, c, labels.get(c)) for c in referral["categories"]]

    task: dict[str, Any] = {
        "resourceType": "Task", "id": task_id, "identifier": identifier,
        "status": TASK_STATUS[state], "intent": "order",
        **({"priority": priority} if priority else {}),
        "focus": {"reference": f"urn:uuid:{request_id}", "type": "ServiceRequest"},
        "for": subject,
        "authoredOn": _instant(referral["requested_at"]),
        "lastModified": _instant(referral["updated_at"]),
        "requester": _organization(referral["referrer"]),
        "owner": _organization(referral["to"]),
    }
    reason = _last_reason(referral.get("history") or [])
    if reason:
        task["statusReason"] = _coded(REASON, reason)
    if referral.get("outcome"):
        task["output"] = [{"type": _coded(OUTPUT, "outcome"),
                           "valueCodeableConcept": _coded(OUTCOME, referral["outcome"])}]

    return {
        "resourceType": "Bundle", "type": "collection",
        "identifier": {"system": REFERRAL, "value": referral_id},
        "timestamp": _instant(referral["updated_at"]),
        "entry": [{"fullUrl": f"urn:uuid:{task_id}", "resource": task},
                  {"fullUrl": f"urn:uuid:{request_id}", "resource": service_request}],
    }
