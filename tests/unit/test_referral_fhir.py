"""The referral lifecycle's mapping onto FHIR R4 codes. ``fhir.resources`` checks a
resource's structure and types but not its required value sets, so these are checked here
against the value sets of FHIR R4 (hl7.org/fhir/R4: task-status, request-status,
request-priority)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from fhir.resources.R4B.bundle import Bundle

from contracts.reference import risk_categories
from services.referral.domain import fhir
from services.referral.domain.referral import State

TASK_STATUS_R4 = {"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress",
                  "on-hold", "failed", "completed", "entered-in-error"}
REQUEST_STATUS_R4 = {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
PRIORITY_R4 = {"routine", "urgent", "asap", "stat"}
T = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


def referral(state: str, urgency: str = "P2") -> dict:
    return {"referral_id": "ref-0001", "case_id": "case-1", "referrer": "isj-bc", "to": "dgaspc-bc",
            "urgency": urgency, "categories": ["neglect", "school_absenteeism"], "state": state, "kind": "service",
            "service_id": "dgaspc-bc-cz", "requested_at": T, "updated_at": T, "history": [], "outcome": None}


def test_every_state_and_urgency_maps_to_an_r4_code_and_validates():
    labels = {c.id: c.label_ro for c in risk_categories().values()}
    for state in State:
        for urgency in ("P0", "P1", "P2", "P3"):
            bundle = fhir.bundle(referral(state.value, urgency), labels)
            Bundle.model_validate(bundle)
            task, request = (e["resource"] for e in bundle["entry"])
            assert task["status"] == state.value and task["status"] in TASK_STATUS_R4
            assert request["status"] in REQUEST_STATUS_R4
            assert task["priority"] == request["priority"] and task["priority"] in PRIORITY_R4
    assert [fhir.PRIORITY[u] for u in ("P0", "P1", "P2", "P3")] == ["stat", "asap", "urgent", "routine"]
    assert {fhir.REQUEST_STATUS[s.value] for s in (State.REJECTED, State.FAILED, State.CANCELLED)} == {"revoked"}


def test_the_example_in_the_contract_is_what_the_service_builds_and_validates():
    doc = (Path(__file__).parents[2] / "docs" / "contracts.md").read_text(encoding="utf-8")
    section = doc[doc.index("### FHIR R4 view of a referral"):doc.index("### The service directory")]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    Bundle.model_validate(example)
    again = {**referral("in-progress", "P1"), "referral_id": "ref-2777aa4be6b45ce8", "service_id": None,
             "categories": ["neglect"], "updated_at": datetime(2026, 11, 30, 11, 5, tzinfo=timezone.utc)}
    assert fhir.bundle(again, {c.id: c.label_ro for c in risk_categories().values()}) == example
