"""Who may refer, read and end what in referral (issue #10), over HTTP and Kafka, on the
real database: only the lead and participants refer a case, a reporter is not one; every
read shows the categories the reader's kind may know and the view its relation gets; a
statutory referral is ended only by the lead or a supervisor; bad ids and limits are
refused, never a server error.

The case: P1, led by DGASPC Bacău, SPAS Colonești informed, reported by the school
(ISJ), then by CJRAE; its risks span abuse, health and education. All data synthetic."""
from __future__ import annotations

import pytest

from runtime.cloudevents import CloudEvent
from runtime.signing import SigningKey
from services.referral.entrypoints.http import router
from tests.integration.helpers import (
    NETWORK_KEY,
    T0,
    api_client,
    bearer,
    delivered,
    emitted,
    keyring_of,
    message,
    of_type,
    on_topic,
    positions,
    referral_config,
    referral_consumers,
)

CATEGORIES = ["neglect", "sexual_abuse", "health_risk", "school_absenteeism"]
KEYS = {i: SigningKey.generate(f"{i}-1") for i in ("dgaspc-bc", "spas-colonesti", "isj-bc", "ipj-bc")}
LEAD, INFORMED, REPORTER, LATER_REPORTER, STRANGER = "dgaspc-bc", "spas-colonesti", "isj-bc", "cjrae-bc", "ipj-bc"


def case_opened(case_id: str = "case-1", urgency: str = "P1") -> CloudEvent:
    return NETWORK_KEY.sign(CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake", {
        "case_id": case_id, "child_ref": "ch-x", "uat_siruta": 21891, "categories": CATEGORIES,
        "urgency": urgency, "lead": LEAD, "informed": [INFORMED], "report_id": f"r-{case_id}",
        "reporter": {"institution": REPORTER, "role": "school-counsellor"},
        "received_at": T0.isoformat(), "do_not_contact": False,
    }, subject=case_id))


def report_added(case_id: str = "case-1") -> CloudEvent:
    return NETWORK_KEY.sign(CloudEvent.new("ro.punte.case.report-added.v1", "/punte/intake", {
        "case_id": case_id, "report_id": f"r2-{case_id}",
        "reporter": {"institution": LATER_REPORTER, "role": "school-counsellor"},
        "categories": CATEGORIES, "new_categories": [], "urgency": "P1", "lead": LEAD,
        "received_at": T0.isoformat(),
    }, subject=case_id))


@pytest.fixture
async def referral(infrastructure):
    """Referral's consumers and its HTTP API on one database, with case-1 opened (and
    reported again by CJRAE) and a P2 case-2 like it."""
    consumers, engine = await referral_consumers(infrastructure.database_url, referral_config(keyring_of(KEYS)))
    for event in (case_opened(), report_added(), case_opened("case-2", "P2")):
        await consumers["cases"].process([message("punte.cases", event, offset=next(positions))])
    client = api_client("referral", router, engine)
    client.consumers = consumers  # type: ignore[attr-defined]
    client.engine = engine  # type: ignore[attr-defined]
    yield client
    await client.aclose()
    await engine.dispose()


async def case_referral(client, case_id: str = "case-1") -> str:
    """The referral of the case to its lead (from the reporter)."""
    [waiting] = [r for r in (await client.get("/v1/referrals/inbox", headers=bearer(LEAD, "cm.ana"))).json()
                 if r["case_id"] == case_id]
    return waiting["referral_id"]


async def send(client, sender: str, type_: str, data: dict) -> None:
    event = KEYS[sender].sign(CloudEvent.new(type_, f"/institutions/{sender}", data))
    await client.consumers["commands"].process(
        [message(f"punte.ingress.{sender}", event, offset=next(positions))])


def code_of(answer) -> tuple[int, str | None]:
    return answer.status_code, (answer.json().get("detail") or {}).get("code")


# --- 1. only the lead and participants refer; reporting does not make a participant ------

async def test_only_the_lead_and_participants_refer_a_case_over_http(referral):
    client = referral
    ask = {"case_id": "case-1", "to": REPORTER, "kind": "information-request"}
    # Reporting is not taking part: to a reporter the case is as hidden as to a stranger.
    for institution, expected in ((REPORTER, (404, "UNKNOWN_CASE")),
                                  (LATER_REPORTER, (404, "UNKNOWN_CASE")),
                                  (STRANGER, (404, "UNKNOWN_CASE"))):
        refused = await client.post("/v1/referrals", json={**ask, "to": institution},
                                    headers=bearer(institution, "cm.x"))
        assert code_of(refused) == expected, institution
    # Nobody joined by asking: the reporter still cannot read the case.
    assert (await client.get("/v1/cases/case-1", headers=bearer(REPORTER, "cm.school"))).status_code in (403, 404)
    assert not of_type(await emitted(client.engine), "ro.punte.referral.requested.v1")[2:]

    made = await client.post("/v1/referrals", json={**ask, "to": STRANGER}, headers=bearer(INFORMED, "cm.spas"))
    assert made.status_code == 201 and made.json()["to"] == STRANGER and made.json()["referrer"] == INFORMED
    # The institution referred to takes part now, and may read the case.
    assert (await client.get("/v1/cases/case-1", headers=bearer(STRANGER, "cm.police"))).status_code == 200


async def test_an_institutions_system_refers_as_its_institution_may(referral):
    client = referral
    ask = {"case_id": "case-1", "to": "cjrae-bc", "kind": "information-request"}
    made = await client.post("/v1/referrals", json=ask, headers=bearer(INFORMED, "sys.spas", "institution-system"))
    assert made.status_code == 201 and made.json()["referrer"] == INFORMED
    refused = await client.post("/v1/referrals", json=ask, headers=bearer(REPORTER, "sys.isj", "institution-system"))
    assert code_of(refused) == (404, "UNKNOWN_CASE")


async def test_only_the_lead_and_participants_refer_a_case_over_kafka(referral):
    client = referral
    ask = {"case_id": "case-1", "to": "cjrae-bc", "kind": "information-request"}
    for sender in (REPORTER, STRANGER, INFORMED):
        await send(client, sender, "ro.punte.referral.request.v1", ask)
    out = await emitted(client.engine)

    def answers(sender):
        return [(d["status"], (d.get("reason") or {}).get("code")) for d in delivered(out, sender)]
    assert answers(REPORTER) == [("rejected", "UNKNOWN_CASE")]
    assert answers(STRANGER) == [("rejected", "UNKNOWN_CASE")]
    assert answers(INFORMED) == [("accepted", None)]
    made = [r for r in of_type(out, "ro.punte.referral.requested.v1") if r["kind"] == "information-request"]
    assert [(r["referrer"], r["to"]) for r in made] == [(INFORMED, "cjrae-bc")]


async def test_an_institution_a_referral_is_forwarded_to_takes_part(referral):
    client = referral
    rid = await case_referral(client)
    forwarded = await client.post(f"/v1/referrals/{rid}/commands", headers=bearer(LEAD, "cm.ana"),
                                  json={"command": "forward", "forward_to": "das-bacau", "reason": "not-competent"})
    assert forwarded.status_code == 200
    assert (await client.get("/v1/cases/case-1", headers=bearer("das-bacau", "cm.das"))).status_code == 200


# --- 2. need to know and views on every read ------------------------------------------------

async def test_every_read_shows_only_the_categories_the_readers_kind_may_know(referral):
    client = referral
    spas, police = bearer(INFORMED, "cm.spas"), bearer(STRANGER, "cm.police")
    asked = await client.post("/v1/referrals", json={"case_id": "case-1", "to": STRANGER,
                                                     "kind": "information-request"}, headers=spas)
    rid = asked.json()["referral_id"]
    assert asked.json()["categories"] == CATEGORIES, "SPAS sees the whole case"
    police_may_know = ["neglect", "sexual_abuse"]  # need-to-know.yaml: IPJ, no health, no education
    [inbox] = (await client.get("/v1/referrals/inbox", headers=police)).json()
    assert inbox["referral_id"] == rid and inbox["categories"] == police_may_know
    seen = (await client.get(f"/v1/referrals/{rid}", headers=police)).json()
    assert seen["categories"] == police_may_know and seen["view"] == "full"
    acted = (await client.post(f"/v1/referrals/{rid}/commands", json={"command": "acknowledge"},
                               headers=police)).json()
    assert acted["categories"] == police_may_know
    the_case = (await client.get("/v1/cases/case-1", headers=police)).json()
    assert the_case["categories"] == police_may_know
    # A participant that is not the lead sees only the referrals it is a side of.
    assert [(r["referral_id"], r["categories"]) for r in the_case["plan"]] == [(rid, police_may_know)]
    # The lead sees the whole case and the whole plan.
    led = (await client.get("/v1/cases/case-1", headers=bearer(LEAD, "cm.ana"))).json()
    assert led["categories"] == CATEGORIES and len(led["plan"]) == 2
    assert all(r["categories"] == CATEGORIES for r in led["plan"])


async def test_a_reporter_that_referred_sees_a_summary_of_its_referral_only(referral):
    client = referral
    rid = await case_referral(client)
    ana, school = bearer(LEAD, "cm.ana"), bearer(REPORTER, "cm.school")
    for body in ({"command": "claim"}, {"command": "accept"}, {"command": "start"},
                 {"command": "note", "note": "Vizită la domiciliu făcută (sintetic)."},
                 {"command": "complete", "outcome": "services-provided-legal"}):
        assert (await client.post(f"/v1/referrals/{rid}/commands", json=body, headers=ana)).status_code == 200
    lead_view = (await client.get(f"/v1/referrals/{rid}", headers=ana)).json()
    assert lead_view["view"] == "full" and lead_view["owner"] == "cm.ana" and len(lead_view["history"]) == 5
    assert lead_view["outcome"] == "services-provided-legal"

    seen = (await client.get(f"/v1/referrals/{rid}", headers=school)).json()
    assert seen["view"] == "summary"
    assert (seen["state"], seen["urgency"], seen["outcome"]) == ("completed", "P1", "services-provided-legal")
    assert seen["categories"] == ["school_absenteeism"], "a school knows only the school's part"
    assert seen["deadlines"] == lead_view["deadlines"]
    assert seen["history"] == [] and seen["owner"] is None, "no notes, reasons or people"
    [sent] = [r for r in (await client.get("/v1/referrals/sent", headers=school)).json() if r["referral_id"] == rid]
    assert (sent["referral_id"], sent["view"], sent["owner"], sent["history"]) == (rid, "summary", None, [])
    assert sent["categories"] == ["school_absenteeism"] and sent["outcome"] == "services-provided-legal"
    # Its feedback is taken; what it gets back is still the summary.
    noted = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "note", "note": "Mulțumim."},
                              headers=school)
    assert noted.status_code == 200 and noted.json()["view"] == "summary" and noted.json()["history"] == []
    # The reporter is no participant: no case, no plan.
    assert code_of(await client.get("/v1/cases/case-1", headers=school))[0] in (403, 404)
    # Who reads what is on record; refused readers read nothing.
    readers = {a["actor_institution"] for a in on_topic(await emitted(client.engine), "punte.access")}
    assert readers == {LEAD, REPORTER}


# --- 3. a statutory referral is ended by the lead or a supervisor --------------------------

@pytest.mark.parametrize("command", ["cancel", "mark-error"])
async def test_a_reporter_does_not_end_a_statutory_referral_but_its_supervisor_may(referral, command):
    client = referral
    rid = await case_referral(client)
    body = {"command": command, "reason": "duplicate"}
    refused = await client.post(f"/v1/referrals/{rid}/commands", json=body, headers=bearer(REPORTER, "cm.school"))
    assert code_of(refused) == (403, "NOT_CASE_LEAD")
    still = (await client.get(f"/v1/referrals/{rid}", headers=bearer(LEAD, "cm.ana"))).json()
    assert still["state"] == "requested"
    ended = await client.post(f"/v1/referrals/{rid}/commands", json=body,
                              headers=bearer(REPORTER, "sup.school", "supervisor"))
    assert ended.status_code == 200 and ended.json()["state"] in ("cancelled", "entered-in-error")


async def test_over_kafka_the_actor_named_in_the_command_must_be_a_supervisor(referral):
    client = referral
    rid = await case_referral(client)
    for roles in (None, ["case-manager"], ["supervisor"]):
        actor = {"actor": {"person": "p.school", "roles": roles}} if roles is not None else {}
        await send(client, REPORTER, "ro.punte.referral.command.v1",
                   {"referral_id": rid, "command": "cancel", "reason": "duplicate", **actor})
    out = await emitted(client.engine)
    codes = [(d["status"], (d.get("reason") or {}).get("code")) for d in delivered(out, REPORTER)]
    assert codes[1:] == [("rejected", "NOT_CASE_LEAD"), ("accepted", None)]
    assert codes[0][0] == "rejected", "without a named person, no one vouches for the role"
    [cancelled] = of_type(out, "ro.punte.referral.transitioned.v1")
    assert cancelled["to_state"] == "cancelled"


async def test_a_non_statutory_referral_is_still_cancelled_by_its_referrer(referral):
    client = referral
    rid = await case_referral(client, "case-2")  # P2: consent-pending, not statutory
    cancelled = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "cancel", "reason": "no-longer-needed"},
                                  headers=bearer(REPORTER, "cm.school"))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    wrong_side = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "mark-error", "reason": "duplicate"},
                                   headers=bearer(LEAD, "cm.ana"))
    assert code_of(wrong_side) == (403, "NOT_REFERRER")


# --- 4. bad limits and ids are refused, never a server error -------------------------------

@pytest.mark.parametrize("limit", ["-1", "0", "501", str(2**63), "99999999999999999999999"])
@pytest.mark.parametrize("path", ["/v1/referrals/inbox", "/v1/referrals/sent"])
async def test_a_limit_out_of_range_is_refused_as_invalid(referral, path, limit):
    answer = await referral.get(path, params={"limit": limit}, headers=bearer(LEAD, "cm.ana"))
    assert answer.status_code == 422


@pytest.mark.parametrize("method, path, code", [
    ("GET", "/v1/referrals/ref-%00x", "UNKNOWN_REFERRAL"),
    ("POST", "/v1/referrals/ref-%00x/commands", "UNKNOWN_REFERRAL"),
    ("GET", "/v1/cases/case-1%00", "UNKNOWN_CASE"),
    ("POST", "/v1/cases/case%00/close", "UNKNOWN_CASE"),
])
async def test_a_nul_byte_in_an_id_is_an_unknown_resource(referral, method, path, code):
    answer = await referral.request(method, path, json={"command": "acknowledge"}, headers=bearer(LEAD, "cm.ana"))
    assert code_of(answer) == (404, code)


async def test_a_nul_byte_in_a_body_is_refused_not_stored(referral):
    client = referral
    rid = await case_referral(client)
    ana = bearer(LEAD, "cm.ana")
    noted = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "note", "note": "a\x00b"}, headers=ana)
    assert noted.status_code == 422
    asked = await client.post("/v1/referrals", json={"case_id": "case-1\x00", "to": INFORMED,
                                                     "kind": "information-request"}, headers=ana)
    assert asked.status_code in (404, 422)
