"""The authorization matrix, generated: every operation of every service's OpenAPI document,
called by every role from every relation to a real case (its lead, a participant, its
reporter, an institution of the county that takes no part, another county's DGASPC, and
a principal without an institution), with a real token, against the running network.
What each call must get is contracts/reference/access.yaml's answer (contracts.access.decide);
an operation without a row in that table fails the test."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from contracts import access
from contracts.access import HIDDEN, Relation
from contracts.reference import institutions
from punte.stack import SERVICES, Stack
from runtime.kafka import make_producer
from runtime.tokens import TokenIssuer
from tests.e2e.conftest import Deliveries, institution_system, wait_until

pytestmark = pytest.mark.e2e

LEAD, REPORTER, OTHER_COUNTY = "dgaspc-bc", "isj-bc", "dgaspc-cj"
NOT_A_CASE = "case-00000000000000ff"
# A consumer group of each service: resuming a running one changes nothing.
GROUPS = {"intake": "punte-intake", "referral": "punte-referral-cases", "notification": "punte-notification",
          "audit": "punte-audit"}
MARK = ("begging", "emotional_abuse")


def minter(network: Stack) -> TokenIssuer:
    """The embedded issuer's own key: tokens for any role, verified by the services like any."""
    return network.state.token_issuer(network.url("identity"))


def bearer(issuer: TokenIssuer, institution: str | None, role: str, subject: str | None = None) -> dict[str, str]:
    subject = subject or (f"cm.{institution}" if institution else role)
    return {"Authorization": f"Bearer {issuer.issue(subject, institution, [role], 'Test')}"}


@dataclass(frozen=True)
class World:
    """One real P1 case, reported by the school, led by the DGASPC."""

    case_id: str
    referral_id: str
    participants: tuple[str, ...]
    event_id: str
    entry_id: str  # a notification in the lead's inbox
    participant: str
    outsider: str

    def askers(self) -> dict[str, str | None]:
        return {"lead": LEAD, "participant": self.participant, "reporter": REPORTER,
                "outsider": self.outsider, "other-county": OTHER_COUNTY, "no-institution": None}


@pytest.fixture(scope="module")
async def world(network: Stack) -> World:
    producer = make_producer(network.kafka_bootstrap)
    await producer.start()
    deliveries = Deliveries(network.kafka_bootstrap)
    await deliveries.start()
    try:
        school = institution_system(network, REPORTER, producer)
        sent = school.report({
            "reporter": {"institution": REPORTER, "role": "school-counsellor"}, "channel": "school",
            "child": {"cnp": "6150623049718", "uat_siruta": 21891, "county": "BC"},
            # A pair of categories no other end-to-end test reports: this case's own mark.
            "risks": [{"category": c} for c in MARK], "description": "Date sintetice (matrice).",
            "immediate_danger": False,
        })
        await school.send(sent)

        async def referred():
            """the lead was asked to act on the school's report"""
            return [n for who, n in deliveries.notifications("referral-requested")
                    if who == LEAD and sorted(n["categories"]) == sorted(MARK)]
        found = await wait_until(referred)
    finally:
        await deliveries.stop()
        await producer.stop()
    issuer = minter(network)
    lead = bearer(issuer, LEAD, "case-manager")
    async with httpx.AsyncClient(timeout=10) as client:
        [requested] = found
        case = (await client.get(f"{network.url('referral')}/v1/cases/{requested['case_id']}", headers=lead)).json()

        async def entry():
            """the lead's inbox holds the case"""
            inbox = (await client.get(f"{network.url('notification')}/inbox?limit=200", headers=lead)).json()
            return [e for e in inbox["entries"] if e["case_id"] == requested["case_id"]]
        [first, *_] = await wait_until(entry)
    participants = tuple(case["participants"])
    participant = next(p for p in participants if p not in (LEAD, REPORTER))
    outsider = next(i.id for i in institutions().values()
                    if i.county == "BC" and i.id not in participants and i.id != REPORTER)
    return World(requested["case_id"], requested["referral_id"], participants, sent.id,
                 first["notification_id"], participant, outsider)


def relations(world: World, institution: str | None, path: str) -> tuple[frozenset[Relation], str | None]:
    """How ``institution`` stands to what ``path`` names, and that resource's kind."""
    if "{referral_id}" in path:
        return access.referral_relations(institution, referrer=REPORTER, to=LEAD, case_lead=LEAD,
                                         case_participants=world.participants), "referral"
    if "{case_id}" in path or path == "/v1/referrals":  # a referral request names its case
        return access.case_relations(institution, lead=LEAD, participants=world.participants,
                                     reporters=[REPORTER]), "case"
    if "{notification_id}" in path:
        own = {Relation.OWN} if institution == LEAD else set()
        return frozenset({Relation.ANY, *own}), "entry"
    if path == "/v1/events/outcome":
        own = {Relation.OWN} if institution == REPORTER else set()
        return frozenset({Relation.ANY, *own}), "event"
    return frozenset({Relation.ANY, Relation.OWN} if institution else {Relation.ANY}), None


def request_for(world: World, method: str, path: str, institution: str | None,
                service: str = "intake") -> dict[str, Any]:
    """A call that touches the world's resources and changes nothing that matters: notes,
    refusals by state (409), bodies that fail validation only after the access check."""
    values = {"case_id": world.case_id, "referral_id": world.referral_id, "notification_id": world.entry_id,
              "other_case_id": NOT_A_CASE, "size": "1", "action": "close", "seq": "1",
              "group": GROUPS[service],
              "row_id": "1"}  # an outbox row that is not parked: refused (409) after the access check
    url = path.format(**{k: v for k, v in values.items() if "{" + k + "}" in path})
    params: dict[str, Any] = {}
    body: Any = None
    operation = f"{method} {path}"
    if path == "/v1/events/outcome":
        params = {"source": f"/institutions/{REPORTER}", "id": world.event_id}
    elif path == "/proofs/inclusion":
        params = {"index": 0, "size": 1}
    elif path == "/proofs/consistency":
        params = {"first": 1, "second": 1}
    elif path.startswith("/webhooks/"):
        params = {"institution": institution or LEAD} if method == "GET" else {}
        replay = {"ids": [1]} if path.endswith("/replay") else {}
        body = {**replay, "institution": institution or LEAD} if method == "POST" else None
    if operation.endswith("/commands"):
        body = {"command": "note", "note": "Matricea de acces (test)."}
    elif operation == "POST /v1/referrals":
        body = {"case_id": world.case_id, "to": LEAD, "kind": "information-request"}
    elif operation == "POST /v1/cases/{case_id}/duplicates/{other_case_id}":
        body = {"decision": "dismissed"}
    elif operation == "PUT /privacy/cases/{case_id}/restriction":
        body = {"restricted": False}  # without a purpose: refused (422) after the access check
    elif operation == "POST /privacy/cases/{case_id}/identity":
        body = {"fields": {"given_name": "Test"}}  # likewise
    elif operation == "POST /dead-letters/replay":
        body = {"positions": ["matrix.none/0/0"]}  # none such: answered "not-found"
    elif operation in ("PUT /preferences", "POST /checkpoints/{size}/cosignatures", "POST /v1/events"):
        body = {}  # invalid: refused after the access check (422/400) when access is granted
    return {"method": method, "url": url, "params": params,
            **({"content": json.dumps(body)} if body is not None else {}),
            "headers": {"content-type": "application/json"}}


async def call(client: httpx.AsyncClient, base: str, spec: dict[str, Any], headers: dict[str, str]
               ) -> tuple[int, str | None]:
    async with client.stream(spec["method"], base + spec["url"], params=spec["params"],
                             content=spec.get("content"), headers={**spec["headers"], **headers}) as answer:
        if answer.status_code < 400:
            return answer.status_code, None  # e.g. the live stream: the status is all we need
        body = await answer.aread()
    try:
        detail = json.loads(body).get("detail")
    except ValueError:
        return answer.status_code, None
    return answer.status_code, detail.get("code") if isinstance(detail, dict) else None


def operations(document: dict[str, Any]) -> Iterable[tuple[str, str]]:
    for path, methods in document["paths"].items():
        for method in methods:
            yield method.upper(), path


async def test_every_operation_answers_every_role_and_relation_as_the_access_table_says(network: Stack,
                                                                                       world: World):
    issuer = minter(network)
    operator = bearer(issuer, None, "operator")
    wrong: list[str] = []
    missing: list[str] = []
    checked = 0
    # Operations are checked four at a time (each one's calls in turn): the calls change
    # nothing that matters, and the services' rate limits count per minute, which the whole
    # test fits in either way.
    slots = asyncio.Semaphore(4)

    async def check(client: httpx.AsyncClient, service: str, base: str, method: str, path: str,
                    action: str) -> None:
        nonlocal checked
        async with slots:
            for relation, institution in world.askers().items():
                spec = request_for(world, method, path, institution, service)
                related, resource = relations(world, institution, path)
                for role in sorted(access.policy().roles):
                    expected = access.decide(action, [role], related, resource)
                    status, code = await call(client, base, spec, bearer(issuer, institution, role))
                    checked += 1
                    denied = status in (401, 403) or (status == 404 and code in HIDDEN.values())
                    if expected.allowed and (denied or status >= 500):
                        wrong.append(f"{service} {method} {path} {role}@{relation}: "
                                     f"allowed by the table, got {status} {code}")
                    elif not expected.allowed and (status, code) != (expected.status, expected.code):
                        wrong.append(f"{service} {method} {path} {role}@{relation}: "
                                     f"expected {expected.status} {expected.code}, got {status} {code}")
            # Without a token nothing but the public operations answers.
            status, code = await call(client, base, request_for(world, method, path, None, service), {})
            if status != 401:
                wrong.append(f"{service} {method} {path} without a token: got {status} {code}")

    async with httpx.AsyncClient(timeout=15) as client:
        checks = []
        for service in SERVICES:
            base = network.url(service)
            document = (await client.get(f"{base}/openapi.json", headers=operator)).json()
            for method, path in operations(document):
                try:
                    action = access.action_for(service, method, path)
                except KeyError:
                    missing.append(f"{service} {method} {path}")
                    continue
                if action is not None:  # None: public (health, sign-in page)
                    checks.append(check(client, service, base, method, path, action))
        await asyncio.gather(*checks)
    assert not missing, "operations without an access rule:\n" + "\n".join(missing)
    assert not wrong, f"{len(wrong)} of {checked} calls disagree with access.yaml:\n" + "\n".join(wrong[:60])
    assert checked > 1000
