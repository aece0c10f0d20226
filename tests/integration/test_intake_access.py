"""Who learns what from intake (issue #10): an outcome names only cases its reporter takes
part in; a case is read by its lead and the institutions informed of it, each seeing only
the risk categories its kind may know; a possible duplicate is the lead's to see and decide;
the HTTP gateway admits only the roles access.yaml grants."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from contracts.reference import delivery_topic
from runtime.cloudevents import CloudEvent
from runtime.outbox import outbox_table
from runtime.signing import SigningKey
from services.intake.entrypoints.http import router
from tests.integration.helpers import (
    api_client,
    bearer,
    delivered,
    emitted,
    intake_consumer,
    keyring_of,
    message,
    of_type,
    positions,
)

V2 = "ro.punte.report.submitted.v2"
COLONESTI = 21891
SENDERS = {"dgaspc-bc": ("helpline-119", "child-protection-specialist"),
           "isj-bc": ("school", "school-counsellor"),
           "spas-colonesti": ("social-worker", "social-worker")}
KEYS = {i: SigningKey.generate(f"{i}-1") for i in SENDERS}
KEYRING = keyring_of(KEYS)
CHILD = {"cnp": "5150412041230", "uat_siruta": COLONESTI, "county": "BC"}


def signed(sender: str, categories: list[str], child: dict | None = None) -> CloudEvent:
    channel, role = SENDERS[sender]
    return KEYS[sender].sign(CloudEvent.new(V2, f"/institutions/{sender}", {
        "reporter": {"institution": sender, "role": role}, "channel": channel,
        "child": child or CHILD, "risks": [{"category": c} for c in categories],
        "description": "Date sintetice.",
    }))


def lookalike(given: str, family: str) -> dict:
    return {"given_name": given, "family_name": family, "birth_date": "2015-04-12",
            "uat_siruta": COLONESTI, "county": "BC"}


@pytest.fixture
async def intake(infrastructure):
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    client = api_client("intake", router, engine, KEYRING)
    yield consumer, engine, client
    await client.aclose()
    await engine.dispose()


async def send(consumer, event: CloudEvent) -> None:
    sender = event.source.removeprefix("/institutions/")
    await consumer.process([message(f"punte.ingress.{sender}", event, offset=next(positions))])


async def delivery_keys(engine, institution: str) -> list[bytes | None]:
    """The Kafka keys of what went to an institution's delivery topic (it sees them too)."""
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(outbox_table.c.key)
                                        .where(outbox_table.c.topic == delivery_topic(institution)))).scalars())


def system_of(institution: str) -> dict[str, str]:
    return bearer(institution, f"sys.{institution}", "institution-system")


# --- outcomes --------------------------------------------------------------------------------

async def test_a_report_joining_another_institutions_case_is_told_accepted_and_nothing_more(intake):
    consumer, engine, client = intake
    await send(consumer, signed("dgaspc-bc", ["neglect"]))  # DGASPC leads, the SPAS is informed
    school = signed("isj-bc", ["neglect"])  # the school knows the child's CNP
    await send(consumer, school)
    out = await emitted(engine)
    [opened] = of_type(out, "ro.punte.case.opened.v1")
    [added] = of_type(out, "ro.punte.case.report-added.v1")
    assert added["case_id"] == opened["case_id"], "the report did join the case"
    [answer] = delivered(out, "isj-bc")
    assert answer == {"subject_id": school.id, "subject_type": V2, "status": "accepted"}
    told = json.dumps(delivered(out, "isj-bc")) + repr(await delivery_keys(engine, "isj-bc"))
    assert opened["case_id"] not in told
    # The HTTP gateway answers with the same stored outcome.
    asked = await client.get("/v1/events/outcome", params={"source": school.source, "id": school.id},
                             headers=system_of("isj-bc"))
    assert asked.status_code == 200 and asked.json() == answer
    assert opened["case_id"] not in asked.text


async def test_a_report_opening_a_case_its_reporter_is_not_routed_to_names_no_case(intake):
    consumer, engine, client = intake
    school = signed("isj-bc", ["extreme_poverty"])  # the SPAS leads; nobody else is informed
    await send(consumer, school)
    out = await emitted(engine)
    [opened] = of_type(out, "ro.punte.case.opened.v1")
    assert delivered(out, "isj-bc") == [{"subject_id": school.id, "subject_type": V2, "status": "accepted"}]
    assert opened["case_id"].encode() not in repr(await delivery_keys(engine, "isj-bc")).encode()


async def test_an_institution_taking_part_in_the_case_is_told_which_case_it_joined(intake):
    consumer, engine, _ = intake
    await send(consumer, signed("dgaspc-bc", ["neglect"]))
    await send(consumer, signed("spas-colonesti", ["neglect"]))  # informed of the DGASPC's case
    out = await emitted(engine)
    [opened] = of_type(out, "ro.punte.case.opened.v1")
    [answer] = delivered(out, "spas-colonesti")
    assert answer["merged"] is True and answer["case_id"] == opened["case_id"]


async def test_possible_duplicates_are_named_only_when_the_reporter_takes_part_in_them(intake):
    consumer, engine, _ = intake
    await send(consumer, signed("dgaspc-bc", ["neglect"], lookalike("Ana-Maria", "Testescu")))
    # The school's own case (SPAS leads, the school is informed) looks like the DGASPC's.
    await send(consumer, signed("isj-bc", ["school_absenteeism"], lookalike("Ana Maria", "Testesku")))
    # The SPAS takes part in both earlier cases.
    await send(consumer, signed("spas-colonesti", ["school_absenteeism"], lookalike("Anamaria", "Testescu")))
    out = await emitted(engine)
    first, second, third = (o["case_id"] for o in of_type(out, "ro.punte.case.opened.v1"))
    [school] = delivered(out, "isj-bc")
    assert school["case_id"] == second
    assert "possible_duplicate_of" not in school and first not in json.dumps(school)
    [spas] = delivered(out, "spas-colonesti")
    assert spas["case_id"] == third and spas["possible_duplicate_of"] == sorted([first, second])


# --- reading a case ---------------------------------------------------------------------------

def manager(institution: str, *roles: str) -> dict[str, str]:
    return bearer(institution, f"cm.{institution}", *roles)


@pytest.fixture
async def abuse_case(intake):
    """A DGASPC case of sexual abuse and a health risk (the police, the SPAS and public
    health informed), joined by the school's report of sexual abuse and absenteeism."""
    consumer, engine, client = intake
    await send(consumer, signed("dgaspc-bc", ["sexual_abuse", "health_risk"]))
    await send(consumer, signed("isj-bc", ["sexual_abuse", "school_absenteeism"]))
    [opened] = of_type(await emitted(engine), "ro.punte.case.opened.v1")
    assert opened["informed"] == ["ipj-bc", "spas-colonesti", "dsp-bc"]
    return client, opened["case_id"]


@pytest.mark.parametrize("institution, visible", [
    ("dgaspc-bc", ["sexual_abuse", "health_risk", "school_absenteeism"]),
    ("spas-colonesti", ["sexual_abuse", "health_risk", "school_absenteeism"]),
    ("ipj-bc", ["sexual_abuse"]),  # the police: never health or education
    ("dsp-bc", ["sexual_abuse", "health_risk"]),  # public health: health and abuse
])
async def test_each_participant_sees_only_the_categories_its_kind_may_know(abuse_case, institution, visible):
    client, case_id = abuse_case
    seen = await client.get(f"/v1/cases/{case_id}", headers=manager(institution))
    assert seen.status_code == 200
    case = seen.json()
    assert case["categories"] == visible
    assert [r["categories"] for r in case["reports"]] == [
        [c for c in ("sexual_abuse", "health_risk") if c in visible],
        [c for c in ("sexual_abuse", "school_absenteeism") if c in visible]]
    hidden = {"sexual_abuse", "health_risk", "school_absenteeism"} - set(visible)
    assert not any(c in seen.text for c in hidden)


async def test_a_case_is_hidden_from_its_reporter_and_from_strangers_as_if_it_did_not_exist(abuse_case):
    client, case_id = abuse_case
    unknown = await client.get("/v1/cases/case-0000000000000000", headers=manager("cjrae-bc"))
    assert unknown.status_code == 404 and unknown.json()["detail"]["code"] == "UNKNOWN_CASE"
    for institution in ("isj-bc", "cjrae-bc"):  # the school only reported it
        hidden = await client.get(f"/v1/cases/{case_id}", headers=manager(institution))
        assert (hidden.status_code, hidden.json()) == (404, unknown.json()), institution


async def test_reading_a_case_takes_a_role_that_works_cases(abuse_case):
    client, case_id = abuse_case
    coordinator = await client.get(f"/v1/cases/{case_id}", headers=manager("dgaspc-bc", "coordinator"))
    assert coordinator.status_code == 200
    for roles in (["auditor"], ["operator"], ["institution-system"]):
        refused = await client.get(f"/v1/cases/{case_id}", headers=manager("dgaspc-bc", *roles))
        assert refused.status_code == 403 and refused.json()["detail"]["code"] == "FORBIDDEN", roles


# --- possible duplicates -----------------------------------------------------------------------

@pytest.fixture
async def doubtful(intake):
    """Two school reports of bullying (the SPAS leads, CJRAE and the school are informed)
    about a child spelled two ways: the second case is a possible duplicate of the first."""
    consumer, engine, client = intake
    await send(consumer, signed("isj-bc", ["bullying"], lookalike("Elena", "Probescu")))
    await send(consumer, signed("isj-bc", ["bullying"], lookalike("Elena", "Probesku")))
    first, second = (o["case_id"] for o in of_type(await emitted(engine), "ro.punte.case.opened.v1"))
    return client, first, second


async def test_possible_duplicates_are_shown_to_the_lead_only(doubtful):
    client, first, second = doubtful
    lead = (await client.get(f"/v1/cases/{second}", headers=manager("spas-colonesti"))).json()
    assert [d["case_id"] for d in lead["possible_duplicates"]] == [first]
    participant = await client.get(f"/v1/cases/{second}", headers=manager("cjrae-bc"))
    assert participant.status_code == 200 and participant.json()["possible_duplicates"] == []
    assert first not in participant.text


async def test_a_duplicate_is_decided_by_the_lead_hidden_from_strangers(doubtful):
    client, first, second = doubtful
    path = f"/v1/cases/{second}/duplicates/{first}"
    participant = await client.post(path, json={"decision": "confirmed"}, headers=manager("cjrae-bc"))
    assert participant.status_code == 403 and participant.json()["detail"]["code"] == "NOT_CASE_LEAD"
    stranger = await client.post(path, json={"decision": "confirmed"}, headers=manager("ipj-bc"))
    assert stranger.status_code == 404 and stranger.json()["detail"]["code"] == "UNKNOWN_CASE"
    auditor = await client.post(path, json={"decision": "confirmed"}, headers=manager("spas-colonesti", "auditor"))
    assert auditor.status_code == 403 and auditor.json()["detail"]["code"] == "FORBIDDEN"
    lead = await client.post(path, json={"decision": "dismissed"}, headers=manager("spas-colonesti", "supervisor"))
    assert lead.status_code == 200 and lead.json()["status"] == "dismissed"


# --- the HTTP gateway --------------------------------------------------------------------------

async def test_the_gateway_admits_only_the_roles_that_submit_and_read_reports(intake):
    _, _, client = intake
    event = signed("isj-bc", ["bullying"])
    headers = {k.replace("ce_", "ce-", 1): v.decode() for k, v in event.headers() if k.startswith("ce_")}
    for roles in (["auditor"], ["operator"], ["coordinator"]):
        posted = await client.post("/v1/events", content=event.body(),
                                   headers={**headers, **bearer("isj-bc", "someone", *roles)})
        assert posted.status_code == 403 and posted.json()["detail"]["code"] == "FORBIDDEN", roles
        asked = await client.get("/v1/events/outcome", params={"source": event.source, "id": event.id},
                                 headers=bearer("isj-bc", "someone", *roles))
        assert asked.status_code == 403 and asked.json()["detail"]["code"] == "FORBIDDEN", roles


async def test_another_institutions_outcome_is_not_found(intake):
    consumer, _, client = intake
    school = signed("isj-bc", ["bullying"])
    await send(consumer, school)
    mine = await client.get("/v1/events/outcome", params={"source": school.source, "id": school.id},
                            headers=system_of("isj-bc"))
    theirs = await client.get("/v1/events/outcome", params={"source": school.source, "id": school.id},
                              headers=system_of("spas-colonesti"))
    assert mine.status_code == 200
    assert theirs.status_code == 404 and theirs.json()["detail"]["code"] == "NOT_FOUND"
