"""Who may use the audit API, and what it refuses (issue #10, items 2 and 10), against a real
database: every endpoint asks the one access rule (access.yaml), the cosignature is for
institutions' systems and auditors, out-of-range numbers and control characters are 4xx
(never a 500 from PostgreSQL), the CSV export cannot smuggle a formula into a spreadsheet,
and the purpose of a query is a code from the list, its free text kept in the trail only."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from runtime.cloudevents import CloudEvent
from runtime.db import make_sessions
from runtime.inbox import InboxConsumer, key_by_position
from runtime.outbox import OutboxRelay
from runtime.service import Runtime
from runtime.settings import Settings
from runtime.signing import Keyring, PublicKey, SigningKey
from runtime.tokens import TokenVerifier
from services.audit import handlers
from services.audit.domain import checkpoint
from services.audit.entrypoints import http, ui
from services.audit.handlers import NOT_IN_TRAIL
from tests.integration.helpers import ISSUER, audit_trail, emitted, message, migrated_database

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "audit" / "migrations"
WITNESS = SigningKey.generate("isj-bc-1")
KEYRING = Keyring([PublicKey(WITNESS.key_id, "isj-bc", WITNESS.public_raw(),
                             datetime(2026, 1, 1, tzinfo=timezone.utc), None)])
# A value a spreadsheet would run as a formula, in an event type and a case id anyone can send.
FORMULA_TYPE = "=HYPERLINK(\"http://example.invalid\",\"x\")"
FORMULA_CASE = "@SUM(1+1)"


def token(subject: str, institution: str | None, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ISSUER.issue(subject, institution, list(roles))}"}


AUDITOR = {**token("aud.ana", None, "auditor"), "X-Punte-Purpose": "audit-inspection"}
OPERATOR = token("operator", None, "operator")
MANAGER = token("cm.ion", "dgaspc-bc", "case-manager")
SYSTEM = token("sys.isj-bc", "isj-bc", "institution-system")


@pytest.fixture
async def api(infrastructure):
    engine, sessions = await migrated_database(infrastructure.database_url, "audit", MIGRATIONS)
    deps = audit_trail()
    trail = InboxConsumer(service="audit", group_id="t", bootstrap="t", sessions=sessions,
                          handler=lambda uow, msg: handlers.append(uow, msg, deps),
                          message_key=key_by_position, attempts=1)
    events = [CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake", {"case_id": f"case-{i}"})
              for i in range(3)]
    odd = CloudEvent.new(FORMULA_TYPE, "/punte/intake", {"case_id": FORMULA_CASE})
    await trail.process([message("punte.cases", e, offset=i) for i, e in enumerate([*events, odd])])
    async with sessions() as session, session.begin():
        await handlers.integrate(session)
    runtime = Runtime(name="audit", settings=Settings(), engine=engine, sessions=make_sessions(engine),
                      producer=None, relay=OutboxRelay(engine, None),  # type: ignore[arg-type]
                      verifier=TokenVerifier(ISSUER.issuer, ISSUER.audience, ISSUER.jwks()),
                      network_key=None, keyring=KEYRING)
    runtime.extras["audit_log"] = handlers.Log("punte.test/audit", SigningKey.generate("punte.test/audit-1"))
    app = FastAPI()
    app.include_router(http.router)
    app.include_router(ui.router)
    app.state.runtime = runtime
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app, raise_app_exceptions=False),
                                 base_url="http://audit.test") as client:
        client.engine = engine  # type: ignore[attr-defined]
        assert (await client.post("/checkpoints", headers=AUDITOR)).status_code == 200
        yield client
    await engine.dispose()


def code_of(answer: httpx.Response) -> str | None:
    detail = answer.json().get("detail") if answer.headers.get("content-type") == "application/json" else None
    return detail.get("code") if isinstance(detail, dict) else None


async def test_every_endpoint_asks_the_access_rule(api):
    size = checkpoint.parse((await api.get("/checkpoints/latest", headers=AUDITOR)).text).checkpoint.size
    everyone = {"auditor": AUDITOR, "operator": OPERATOR, "case-manager": MANAGER, "institution-system": SYSTEM}
    allowed = {
        ("GET", "/entries"): {"auditor"},
        ("GET", "/cases/case-1/timeline"): {"auditor"},
        ("GET", "/export"): {"auditor"},
        ("GET", "/verify"): {"auditor", "operator"},
        ("POST", "/checkpoints"): {"auditor", "operator"},
        ("GET", "/log-key"): set(everyone),
        ("GET", "/checkpoints/latest"): set(everyone),
        ("GET", f"/checkpoints/{size}"): set(everyone),
        ("GET", f"/proofs/inclusion?index=0&size={size}"): set(everyone),
        ("GET", f"/proofs/consistency?first=1&second={size}"): set(everyone),
    }
    for (method, path), roles in allowed.items():
        assert (await api.request(method, path)).status_code == 401, path
        for role, who in everyone.items():
            answer = await api.request(method, path, headers=who)
            if role in roles:
                assert answer.status_code == 200, (path, role, answer.text)
            else:
                assert (answer.status_code, code_of(answer)) == (403, "FORBIDDEN"), (path, role)


async def test_witnesses_are_institution_systems_and_auditors(api):
    note = (await api.get("/checkpoints/latest", headers=AUDITOR)).text
    size = checkpoint.parse(note).checkpoint.size
    line = checkpoint.cosign(note, "isj-bc", WITNESS.private, 1_800_000_000)
    path = f"/checkpoints/{size}/cosignatures"
    plain = {"Content-Type": "text/plain"}
    # A case manager of the same institution may not witness for it.
    refused = await api.post(path, content=line, headers={**plain, **token("cm.isj", "isj-bc", "case-manager")})
    assert (refused.status_code, code_of(refused)) == (403, "FORBIDDEN")
    operator = await api.post(path, content=line, headers={**plain, **OPERATOR})
    assert (operator.status_code, code_of(operator)) == (403, "FORBIDDEN")
    cosigned = await api.post(path, content=line, headers={**plain, **SYSTEM})
    assert cosigned.status_code == 200 and checkpoint.verify_cosignature(cosigned.text, "isj-bc",
                                                                         WITNESS.public_raw())
    # An auditor may witness too, with a key of its own: one the network does not hold is refused.
    auditor = await api.post(path, content=line, headers={**plain, **AUDITOR})
    assert (auditor.status_code, code_of(auditor)) == (422, "BAD_COSIGNATURE")


async def test_numbers_out_of_range_are_422_and_control_characters_4xx(api):
    for path, params in (("/entries", {"limit": -1}), ("/entries", {"limit": 2**64}),
                         ("/entries", {"offset": -1}), ("/entries", {"offset": 2**63}),
                         ("/export", {"size": -1}), ("/export", {"size": 2**63}),
                         ("/proofs/inclusion", {"index": -1, "size": 1}),
                         ("/proofs/inclusion", {"index": 0, "size": 2**64}),
                         ("/proofs/consistency", {"first": 2**63, "second": 2**64})):
        answer = await api.get(path, params=params, headers=AUDITOR)
        assert answer.status_code == 422, (path, params, answer.text)
    for size in ("-1", str(2**63), str(2**64 + 1)):
        assert (await api.get(f"/checkpoints/{size}", headers=AUDITOR)).status_code == 422, size
        cosign = await api.post(f"/checkpoints/{size}/cosignatures", content="x",
                                headers={"Content-Type": "text/plain", **SYSTEM})
        assert cosign.status_code == 422, size
    for name in ("case_id", "child_ref", "institution", "actor", "event_type", "topic"):
        for odd in ("case-1\x00", "a\x01b", "\x7f"):
            answer = await api.get("/entries", params={name: odd}, headers=AUDITOR)
            assert (answer.status_code, code_of(answer)) == (422, "INVALID_CHARACTERS"), (name, answer.text)
            assert odd not in answer.text
    for odd in ("case-1%00", "a%00b", "a%0Ab"):
        answer = await api.get(f"/cases/{odd}/timeline", headers=AUDITOR)
        assert (answer.status_code, code_of(answer)) == (404, "NOT_FOUND"), answer.text


async def test_the_csv_export_neutralises_formulas(api):
    exported = await api.get("/export", params={"format": "csv"}, headers=AUDITOR)
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    [odd] = [r for r in rows if FORMULA_CASE in r["case_id"]]
    assert odd["case_id"] == "'" + FORMULA_CASE and odd["event_type"] == "'" + FORMULA_TYPE
    for row in rows:
        for cell in row.values():
            assert not cell or cell[0] not in "=+-@\t\r", row
    assert [r["case_id"] for r in rows[:3]] == ["case-0", "case-1", "case-2"]  # plain text stays as it was


async def test_the_purpose_is_a_code_from_the_list_and_its_free_text_stays_in_the_trail(api):
    labels = (await api.get("/ui/api/reference", headers=AUDITOR)).json()["purposes"]
    assert labels["audit-inspection"]["ro"] and labels["audit-inspection"]["en"]
    assert {"case-work", "verification", "court-request", "dpo-request", "statistics"} <= set(labels)
    before = len(await emitted(api.engine))  # type: ignore[attr-defined]
    unknown = await api.get("/entries", params={"case_id": "case-1"},
                            headers={**AUDITOR, "X-Punte-Purpose": "control tematic"})
    assert (unknown.status_code, code_of(unknown)) == (422, "UNKNOWN_PURPOSE")
    assert "control tematic" not in unknown.text
    assert len(await emitted(api.engine)) == before  # a refused query reads nothing  # type: ignore[attr-defined]
    text = "control tematic ISJ, sesizarea nr. 12; anexa 3"
    stated = await api.get("/entries", params={"case_id": "case-1"},
                           headers={**AUDITOR, "X-Punte-Purpose": f"audit-inspection; {quote(text)}"})
    assert stated.status_code == 200
    by_query = await api.get("/cases/case-2/timeline", params={"purpose": "dpo-request"},
                             headers={k: v for k, v in AUDITOR.items() if k != "X-Punte-Purpose"})
    assert by_query.status_code == 200
    accesses = [d for t, _, d in await emitted(api.engine) if t == "punte.access"]  # type: ignore[attr-defined]
    assert [(a["purpose"], a.get("purpose_text"), a["case_id"]) for a in accesses[-2:]] == [
        ("audit-inspection", text, "case-1"), ("dpo-request", None, "case-2")]


async def test_a_search_term_the_trail_does_not_hold_is_not_recorded_as_typed(api):
    """An auditor's search is recorded on punte.access, which travels and rests in the trail:
    a term is recorded as given when the trail holds it in its column (an id it keeps
    anyway), anything else as "(not in the trail)", so a child's name typed into the wrong
    box (a synthetic one here) is kept nowhere. The search answers as before."""
    name = "Sinteticu"
    before = len(await emitted(api.engine))  # type: ignore[attr-defined]
    held = await api.get("/entries", params={"case_id": "case-1", "event_type": "ro.punte.case.opened.v1",
                                             "topic": "punte.cases"}, headers=AUDITOR)
    assert held.status_code == 200 and [e["case_id"] for e in held.json()["entries"]] == ["case-1"]
    for params in ({"institution": name}, {"child_ref": name}, {"actor": name}, {"event_type": name},
                   {"topic": name}, {"case_id": name}, {"case_id": "case-1", "institution": name}):
        answer = await api.get("/entries", params=params, headers=AUDITOR)
        assert answer.status_code == 200 and answer.json()["entries"] == [], params
    timeline = await api.get(f"/cases/{name}/timeline", headers=AUDITOR)
    assert timeline.status_code == 200 and timeline.json() == []
    accesses = [d for t, _, d in (await emitted(api.engine))[before:] if t == "punte.access"]  # type: ignore[attr-defined]
    assert name not in json.dumps(accesses)
    assert accesses[0]["query"] == {"case_id": "case-1", "event_type": "ro.punte.case.opened.v1",
                                    "topic": "punte.cases"} and accesses[0]["case_id"] == "case-1"
    assert [a["query"] for a in accesses[1:-1]] == [
        {"institution": NOT_IN_TRAIL}, {"child_ref": NOT_IN_TRAIL}, {"actor": NOT_IN_TRAIL},
        {"event_type": NOT_IN_TRAIL}, {"topic": NOT_IN_TRAIL}, {"case_id": NOT_IN_TRAIL},
        {"case_id": "case-1", "institution": NOT_IN_TRAIL}]
    assert (accesses[-1]["query"], accesses[-1]["case_id"], accesses[-1]["resource"]) == (
        {"timeline": NOT_IN_TRAIL}, None, "/cases/{case_id}/timeline")
