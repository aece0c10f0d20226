"""A referral as FHIR R4 (``GET /v1/referrals/{id}/fhir``) on the real database: a Bundle of
its Task and ServiceRequest that ``fhir.resources`` accepts (its R4B models: the package
has no R4 module, and R4B keeps R4's Task, ServiceRequest and Bundle), with the lifecycle's
state, the institutions as Organization references and the risk categories as codes; read
by the same rule as the referral itself, recorded the same way, and carrying no note, no
person and nothing that names the child. All data synthetic."""
from __future__ import annotations

import json

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from services.referral.domain import fhir
from services.referral.entrypoints.http import router
from tests.integration.helpers import (
    bearer,
    emitted,
    on_topic,
    referral_api,
)

CHILD = "Ionela Sinteticescu"  # a synthetic name a note might carry: never in the FHIR view


@pytest.fixture
async def api(infrastructure):
    async with referral_api(infrastructure.database_url, router) as client:
        yield client


def resources(answer) -> tuple[Task, ServiceRequest]:
    """The validated Task and ServiceRequest of a FHIR answer (raises if FHIR R4 refuses it)."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].split(";")[0] == "application/fhir+json"
    bundle = Bundle.model_validate(answer.json())
    assert bundle.type == "collection"
    task, request = (Task.model_validate(e.resource.model_dump()) if e.resource.get_resource_type() == "Task"
                     else ServiceRequest.model_validate(e.resource.model_dump()) for e in bundle.entry)
    assert task.focus.reference == bundle.entry[1].fullUrl, "the Task's focus is the bundled ServiceRequest"
    return task, request


def texts(value) -> list[str]:
    """Every string in a JSON value."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in texts(v)]
    if isinstance(value, list):
        return [s for v in value for s in texts(v)]
    return [value] if isinstance(value, str) else []


async def test_a_referral_reads_as_a_valid_fhir_task_and_service_request(api):
    lead = bearer("dgaspc-bc", "cm.ana")
    [waiting] = (await api.get("/v1/referrals/inbox", headers=lead)).json()
    rid = waiting["referral_id"]
    await api.post(f"/v1/referrals/{rid}/commands", json={"command": "note", "note": f"{CHILD} a lipsit azi."},
                   headers=lead)

    answer = await api.get(f"/v1/referrals/{rid}/fhir", headers=lead)
    task, request = resources(answer)
    assert (task.status, task.intent, task.priority) == ("requested", "order", "asap")  # P1
    assert task.identifier[0].value == request.identifier[0].value == rid
    assert (task.requester.identifier.value, task.owner.identifier.value) == ("isj-bc", "dgaspc-bc")
    assert task.requester.type == task.owner.type == "Organization"
    assert request.performer[0].identifier.value == "dgaspc-bc" and request.status == "active"
    assert [c.coding[0].code for c in request.reasonCode] == ["neglect"]
    assert request.reasonCode[0].coding[0].system == fhir.RISK_CATEGORY
    assert request.category[0].coding[0].code == waiting["kind"]
    # The child is the case's pseudonym, nothing more.
    assert (request.subject.identifier.system, request.subject.identifier.value) == (fhir.CASE, "case-1")
    assert request.subject.reference is None and request.subject.display is None
    body = answer.json()
    assert not any(CHILD in s or "lipsit" in s for s in texts(body)), "no note reaches the FHIR view"
    assert not {"note", "text", "description", "patientInstruction"} & set(json.dumps(body).replace('"', " ").split())

    # The lifecycle as Task status: rejected, with the reason's code and no free text.
    await api.post(f"/v1/referrals/{rid}/commands", json={"command": "reject", "reason": "not-competent"},
                   headers=lead)
    task, request = resources(await api.get(f"/v1/referrals/{rid}/fhir", headers=lead))
    assert (task.status, request.status) == ("rejected", "revoked")
    assert (task.statusReason.coding[0].system, task.statusReason.coding[0].code) == (fhir.REASON, "not-competent")


async def test_the_fhir_view_follows_the_referrals_own_access_rule_and_view(api):
    lead = bearer("dgaspc-bc", "cm.ana")
    [waiting] = (await api.get("/v1/referrals/inbox", headers=lead)).json()
    rid = waiting["referral_id"]
    for body in ({"command": "accept"}, {"command": "start"},
                 {"command": "complete", "outcome": "services-provided-legal"}):
        assert (await api.post(f"/v1/referrals/{rid}/commands", json=body, headers=lead)).status_code == 200

    # The school referred but takes no part in the case: a summary, as its plain read.
    task, request = resources(await api.get(f"/v1/referrals/{rid}/fhir", headers=bearer("isj-bc", "cm.school")))
    assert (task.status, request.status) == ("completed", "completed")
    assert task.output[0].valueCodeableConcept.coding[0].code == "services-provided-legal"
    assert task.statusReason is None

    # No relation to the referral: not found, on both paths alike.
    police = bearer("ipj-bc", "cm.police")
    answers = [await api.get(path, headers=police) for path in (f"/v1/referrals/{rid}", f"/v1/referrals/{rid}/fhir")]
    assert {(a.status_code, a.json()["detail"]["code"]) for a in answers} == {(404, "UNKNOWN_REFERRAL")}
    missing = await api.get("/v1/referrals/no-such/fhir", headers=lead)
    assert missing.status_code == 404
    assert (await api.get(f"/v1/referrals/{rid}/fhir")).status_code == 401
    operator = bearer(None, "op", "operator")
    assert (await api.get(f"/v1/referrals/{rid}/fhir", headers=operator)).status_code == 403

    # Every FHIR read is on record like any read of the case.
    reads = [a for a in on_topic(await emitted(api.engine), "punte.access") if a["actor_institution"] == "isj-bc"]
    assert len(reads) == 1
