"""The referral API for case managers on the real database: the team inbox, claiming
and acting by HTTP with the same rules as Kafka, the case's plan and closure, and the
service directory proposing free places first."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from services.referral.adapters.tables import services
from services.referral.entrypoints.http import router
from tests.integration.helpers import (
    T0,
    bearer,
    emitted,
    on_topic,
    referral_api,
)


@pytest.fixture
async def api(infrastructure):
    async with referral_api(infrastructure.database_url, router) as client:
        yield client


async def test_a_team_works_a_referral_from_its_inbox(api):
    client = api
    ana, ion = bearer("dgaspc-bc", "cm.ana"), bearer("dgaspc-bc", "cm.ion")
    [waiting] = (await client.get("/v1/referrals/inbox?owner=unassigned", headers=ana)).json()
    rid = waiting["referral_id"]
    claimed = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "claim"}, headers=ana)
    taken = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "claim"}, headers=ion)
    assert claimed.status_code == 200 and claimed.json()["owner"] == "cm.ana"
    assert taken.status_code == 409 and taken.json()["detail"]["code"] == "ALREADY_CLAIMED"
    boss = bearer("dgaspc-bc", "sup.maria", "supervisor")
    moved = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "assign", "assignee": "cm.ion"},
                              headers=boss)
    assert moved.json()["owner"] == "cm.ion"
    assert [r["referral_id"] for r in (await client.get("/v1/referrals/inbox?owner=mine", headers=ion)).json()] == [rid]
    early = await client.post(f"/v1/referrals/{rid}/commands", json={"command": "complete"}, headers=ion)
    assert early.status_code == 409 and early.json()["detail"]["code"] == "ILLEGAL_TRANSITION"
    for body in ({"command": "accept"}, {"command": "start"},
                 {"command": "complete", "outcome": "services-provided-legal"}):
        assert (await client.post(f"/v1/referrals/{rid}/commands", json=body, headers=ion)).status_code == 200
    referrer = bearer("isj-bc", "cm.school")
    seen = (await client.get(f"/v1/referrals/{rid}", headers=referrer)).json()
    # The school reported and referred but takes no part in the case: it sees how its
    # referral stands and ended, not the work on it (access.yaml views: referrer summary).
    assert (seen["view"], seen["state"], seen["outcome"]) == ("summary", "completed", "services-provided-legal")
    assert seen["history"] == [] and seen["owner"] is None
    worked = (await client.get(f"/v1/referrals/{rid}", headers=ion)).json()
    assert [(h["command"], h["owner"]) for h in worked["history"]][:2] == [("claim", "cm.ana"), ("assign", "cm.ion")]
    outsider = await client.get(f"/v1/referrals/{rid}", headers=bearer("ipj-bc", "cm.police"))
    assert outsider.status_code == 404
    # Every read is on record, and only those taking part read anything.
    readers = {a["actor_institution"] for a in on_topic(await emitted(client.engine), "punte.access")}
    assert readers == {"dgaspc-bc", "isj-bc"}


async def test_a_case_closes_only_when_its_plan_is_done_and_only_by_its_lead(api):
    client = api
    lead = bearer("dgaspc-bc", "cm.ana")
    not_lead = await client.post("/v1/cases/case-1/close", headers=bearer("spas-colonesti", "cm.x"))
    assert not_lead.status_code == 403 and not_lead.json()["detail"]["code"] == "NOT_CASE_LEAD"
    too_soon = await client.post("/v1/cases/case-1/close", headers=lead)
    assert too_soon.status_code == 409 and too_soon.json()["detail"]["code"] == "CASE_HAS_OPEN_REFERRALS"
    [plan] = (await client.get("/v1/cases/case-1", headers=lead)).json()["plan"]
    await client.post(f"/v1/referrals/{plan['referral_id']}/commands",
                      json={"command": "reject", "reason": "not-competent"}, headers=lead)
    closed = await client.post("/v1/cases/case-1/close", headers=lead)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    reopened = await client.post("/v1/cases/case-1/reopen", headers=lead)
    assert reopened.json()["status"] == "open"


async def test_the_directory_proposes_free_places_first_and_says_so(api):
    client = api
    # The seeded directory has no free places for neglect; a provider reports some.
    async with client.engine.begin() as conn:
        await conn.execute(sa.insert(services).values(
            service_id="spas-colonesti-sprijin", provider="spas-colonesti", name="Sprijin (sintetic)",
            categories=["neglect"], capacity=10, occupancy=4, waiting=3, accepting=True, updated_at=T0))
    found = (await client.get("/v1/services?category=neglect", headers=bearer("isj-bc", "cm.school"))).json()
    assert found, "services for neglect exist in the directory"
    proposals = [s["proposal"] for s in found]
    order = {"locuri libere / free places": 0, "capacitate necunoscută / capacity unknown": 1}
    ranks = [order.get(p, 2) for p in proposals]
    assert ranks == sorted(ranks)
    assert set(ranks) == {0, 1, 2}, "free, unknown and full are all proposed, in that order"
    assert (found[0]["service_id"], found[0]["free_places"]) == ("spas-colonesti-sprijin", 6)
    assert all("neglect" in s["categories"] for s in found)
