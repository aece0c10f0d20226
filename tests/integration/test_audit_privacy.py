"""The audit trail holds no child's data in clear (issue #11, items 2 and 3; decision 0016),
against a real database: auditors search, export and verify offline without reading a
report's CNP, name or story; opening a sealed value is break-glass (a purpose, an access
event, the lead told); a closed case is erased by its retention rule and the whole trail
still verifies offline, its erased entries saying when and by which rule."""
from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from runtime.cloudevents import CloudEvent
from runtime.db import make_sessions
from runtime.inbox import key_by_position
from runtime.outbox import OutboxRelay
from runtime.service import Runtime
from runtime.settings import Settings
from runtime.signing import Keyring, SigningKey
from runtime.tokens import TokenVerifier
from services.audit import handlers
from services.audit.adapters.export_archive import FOLDER
from services.audit.adapters.tables import audit_entries, audit_sealed_values
from services.audit.domain import checkpoint, offline, tiles
from services.audit.domain.entries import Record, canonical_v1
from services.audit.domain.merkle import leaf_hash
from services.audit.entrypoints import http
from tests.integration.helpers import (
    ISSUER,
    NETWORK_KEY,
    audit_consumer,
    audit_trail,
    emitted,
    message,
    migrated_database,
)

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "audit" / "migrations"
LOG = handlers.Log("punte.test/audit", SigningKey.generate("punte.test/audit-1"))
# A synthetic child: what must never be readable by an auditor.
CNP, GIVEN, FAMILY = "6150312041236", "Ilinca", "Sinteticescu"
STORY = "Vecinii aud tipete noaptea; copilul are vanatai (text sintetic de test)"
CASE, REPORT, LEAD = "case-priv-1", "rep-priv-1", "dgaspc-bc"
AUDITOR = {"Authorization": f"Bearer {ISSUER.issue('aud.ana', None, ['auditor'])}",
           "X-Punte-Purpose": "audit-inspection"}
SECRETS = (CNP, GIVEN, FAMILY, STORY, "vanatai")


def report(report_id: str = REPORT) -> CloudEvent:
    """An institution's report of a synthetic child, in clear (a transition-period version)."""
    return CloudEvent.new("ro.punte.report.submitted.v2", "/institutions/isj-bc", {
        "reporter": {"institution": "isj-bc", "role": "school-counsellor"}, "channel": "school",
        "child": {"cnp": CNP, "given_name": GIVEN, "family_name": FAMILY, "county": "BC", "uat_siruta": 21891},
        "risks": [{"category": "physical_abuse"}], "description": STORY,
    }, id=report_id)


def signed(type_: str, source: str, data: dict, subject: str | None = None) -> CloudEvent:
    """An internal event as the network's services send it: signed with the network key."""
    return NETWORK_KEY.sign(CloudEvent.new(type_, source, data, subject=subject))


def case_opened(case_id: str = CASE, report_id: str = REPORT) -> CloudEvent:
    return signed("ro.punte.case.opened.v1", "/punte/intake", {
        "case_id": case_id, "child_ref": "ch-priv", "uat_siruta": 21891, "categories": ["physical_abuse"],
        "urgency": "P1", "lead": LEAD, "informed": ["spas-colonesti"], "report_id": report_id,
        "reporter": {"institution": "isj-bc", "role": "school-counsellor"},
        "received_at": datetime.now(timezone.utc).isoformat()}, subject=case_id)


def case_closed(case_id: str = CASE, report_ids: tuple[str, ...] = (REPORT,),
                closed_at: datetime | None = None) -> CloudEvent:
    return signed("ro.punte.case.closed.v1", "/punte/referral", {
        "case_id": case_id, "closed_at": (closed_at or datetime.now(timezone.utc)).isoformat(),
        "closed_by": "cm.dgaspc.maria", "reason": "objectives-met", "report_ids": list(report_ids)},
        subject=case_id)


def outcome(report_id: str, status: str, case_id: str | None = None) -> CloudEvent:
    data = {"subject_id": report_id, "subject_type": "ro.punte.report.submitted.v2", "status": status,
            "case_id": case_id}
    if status == "rejected":
        data["reason"] = {"code": "SCHEMA_VIOLATION", "message_ro": "x", "message_en": "x"}
    return signed("ro.punte.outcome.v1", "/punte/intake", data, subject=case_id)


def retention_file(tmp_path: Path, days: int) -> Path:
    """The contract's schedule with every period set to ``days`` (0: erase at once)."""
    text = (Path(__file__).resolve().parents[2] / "contracts" / "reference" / "retention.yaml").read_text()
    lines = [f"    days: {days}" if line.startswith("    days:") else line for line in text.splitlines()]
    path = tmp_path / "retention.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Audit:
    """The audit service on a fresh database: its consumer, its API, its purge job."""

    def __init__(self, engine, sessions, trail: handlers.Trail, client: httpx.AsyncClient) -> None:
        self.engine, self.sessions, self.trail, self.client = engine, sessions, trail, client
        self.consumer = audit_consumer(sessions, trail, message_key=key_by_position)
        self.offsets: dict[str, int] = {}

    async def receive(self, *records: tuple[str, CloudEvent]) -> None:
        batch = []
        for topic, event in records:
            offset = self.offsets.get(topic, 0)
            self.offsets[topic] = offset + 1
            batch.append(message(topic, event, offset=offset))
        await self.consumer.process(batch)

    async def purge(self, now: datetime | None = None) -> int:
        async with self.sessions() as session, session.begin():
            return await handlers.erase_due(session, self.trail.data_keys, now or datetime.now(timezone.utc))

    async def export(self) -> bytes:
        """The export as the auditor downloads it: a tar stream (decision 0034)."""
        assert (await self.client.post("/checkpoints", headers=AUDITOR)).status_code == 200
        answer = await self.client.get("/export", headers=AUDITOR)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/x-tar"
        return answer.content

    async def entries(self, **params) -> list[dict]:
        answer = await self.client.get("/entries", params=params, headers=AUDITOR)
        assert answer.status_code == 200, answer.text
        return answer.json()["entries"]


async def build(infrastructure, retention: Path | None = None):
    engine, sessions = await migrated_database(infrastructure.database_url, "audit", MIGRATIONS)
    # The trail's messages are made up here, not read from the broker: it records topics
    # the broker does not have, so /verify finds no partition to compare it with.
    trail = dataclasses.replace(audit_trail(retention), topics=r"^punte\.privacy-test$")
    runtime = Runtime(name="audit", settings=Settings(kafka_bootstrap=infrastructure.kafka_bootstrap),
                      engine=engine, sessions=make_sessions(engine),
                      producer=None, relay=OutboxRelay(engine, None),  # type: ignore[arg-type]
                      verifier=TokenVerifier(ISSUER.issuer, ISSUER.audience, ISSUER.jwks()),
                      network_key=None, keyring=Keyring([]))
    runtime.extras["audit_log"] = LOG
    runtime.extras["audit_trail"] = trail
    app = FastAPI()
    app.include_router(http.router)
    app.state.runtime = runtime
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://audit.test")
    return Audit(engine, sessions, trail, client)


@pytest.fixture
async def audit(infrastructure):
    built = await build(infrastructure)
    yield built
    await built.client.aclose()
    await built.engine.dispose()


@pytest.fixture
async def erasing(infrastructure, tmp_path):
    """The audit with a retention schedule of 0 days: what is scheduled is due at once."""
    built = await build(infrastructure, retention_file(tmp_path, 0))
    yield built
    await built.client.aclose()
    await built.engine.dispose()


def unpacked(exported: bytes) -> offline.MemorySource:
    """The export's files by their path in the layout."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(exported)) as archive:
        for member in archive.getmembers():
            handle = archive.extractfile(member)
            assert member.name.startswith(f"{FOLDER}/") and handle is not None
            files[member.name.removeprefix(f"{FOLDER}/")] = handle.read()
    return offline.MemorySource(files)


def verify_offline(tmp_path: Path, exported: bytes, verifier_key: str) -> dict:
    """``punte audit verify`` on the export, as an auditor runs it on another computer."""
    path = tmp_path / "trail.tar"
    path.write_bytes(exported)
    done = subprocess.run([sys.executable, "-m", "punte.cli", "audit", "verify", str(path), "--key", verifier_key,
                           "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def readable(text: str) -> str:
    """Everything an auditor could read in an answer: the text and any base64 in it decoded."""
    found = [text]
    for token in text.replace('"', " ").replace(",", " ").split():
        try:
            found.append(base64.b64decode(token, validate=True).decode("utf-8", errors="ignore"))
        except ValueError:
            continue
    return "\n".join(found)


async def verifier_key(audit: Audit) -> str:
    return (await audit.client.get("/log-key", headers=AUDITOR)).json()["verifier_key"]


@pytest.mark.broker
async def test_auditors_search_export_and_verify_offline_without_reading_a_childs_report(audit, tmp_path):
    await audit.receive(("punte.ingress.isj-bc", report()), ("punte.cases", case_opened()))
    entries = await audit.entries()
    [sent] = [e for e in entries if e["event_id"] == REPORT]
    # The digest form: the record as it was, its value a digest; the value sealed.
    assert sent["log_version"] == 2 and "value" not in sent["record"]
    assert sent["record"]["value_sha256"] == hashlib.sha256(report().body()).hexdigest()
    assert sent["value"] == {"state": "sealed", "scope": f"report:{REPORT}", "erased_at": None, "erased_rule": None}
    assert json.loads(base64.b64decode(sent["entry_base64"])) == sent["record"]
    exported = await audit.export()
    table = (await audit.client.get("/export", params={"format": "csv"}, headers=AUDITOR)).text
    for answer in (json.dumps(entries), exported.decode("utf-8", errors="replace"), table):
        seen = readable(answer)
        for secret in SECRETS:
            assert secret not in seen
    rows = list(csv.DictReader(io.StringIO(table)))
    assert {r["value_state"] for r in rows} == {"sealed"}
    report_line = next(offline.described(unpacked(exported)))
    assert report_line["value"]["state"] == "sealed" and report_line["log_version"] == 2
    # An auditor's export, holding no personal data, still proves the whole log offline.
    verified = verify_offline(tmp_path, exported, await verifier_key(audit))
    assert verified["ok"] and verified["checked"] == verified["size"] >= 2


@pytest.mark.broker
async def test_opening_a_sealed_value_is_break_glass_with_a_purpose_recorded_and_told(audit):
    await audit.receive(("punte.ingress.isj-bc", report()), ("punte.cases", case_opened()))
    [sent] = await audit.entries(event_type="ro.punte.report.submitted.v2")
    path = f"/entries/{sent['seq']}/value"
    before = len(await emitted(audit.engine))
    bare = {"Authorization": AUDITOR["Authorization"]}
    refused = await audit.client.post(path, headers=bare)
    assert (refused.status_code, refused.json()["detail"]["code"]) == (422, "PURPOSE_REQUIRED")
    unknown = await audit.client.post(path, headers={**bare, "X-Punte-Purpose": "curiozitate"})
    assert (unknown.status_code, unknown.json()["detail"]["code"]) == (422, "UNKNOWN_PURPOSE")
    manager = {"Authorization": f"Bearer {ISSUER.issue('cm.ion', LEAD, ['case-manager'])}",
               "X-Punte-Purpose": "case-work"}
    forbidden = await audit.client.post(path, headers=manager)
    assert (forbidden.status_code, forbidden.json()["detail"]["code"]) == (403, "FORBIDDEN")
    assert len(await emitted(audit.engine)) == before, "a refused opening reads nothing"

    opened = await audit.client.post(path, headers={**bare, "X-Punte-Purpose": "court-request; dosar%20123"})
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert base64.b64decode(body["value_base64"]) == report().body()
    # The report joined the case: the opening is about that case, whose lead is told.
    assert (body["scope"], body["case_id"]) == (f"report:{REPORT}", CASE)
    [access] = [d for t, _, d in (await emitted(audit.engine))[before:] if t == "punte.access"]
    assert (access["break_glass"], access["case_id"], access["purpose"], access["purpose_text"]) == (
        True, CASE, "court-request", "dosar 123")
    assert access["actor"] == "aud.ana" and access["query"]["seq"] == str(sent["seq"])


@pytest.mark.broker
async def test_a_closed_case_is_erased_by_its_rule_and_the_whole_trail_still_verifies_offline(erasing, tmp_path):
    audit = erasing
    await audit.receive(("punte.ingress.isj-bc", report()), ("punte.cases", case_opened()),
                        ("punte.delivery.isj-bc", outcome(REPORT, "accepted", CASE)))
    first = await audit.export()
    # Referral closes the case on punte.referrals; the closing may name no report: the
    # trail knows the case's reports from case.opened.
    await audit.receive(("punte.referrals", case_closed(report_ids=())))
    assert await audit.purge() == 2  # case:<id> and report:<id>
    async with audit.sessions() as session:
        stored = await handlers.verify_stored(session)
        kept = await session.scalar(sa.select(sa.func.count()).select_from(audit_sealed_values))
    assert stored.verified, stored.problems
    entries = await audit.entries()
    erased = [e for e in entries if e["value"]["state"] == "erased"]
    assert {e["event_type"] for e in erased} == {"ro.punte.report.submitted.v2", "ro.punte.case.opened.v1",
                                                  "ro.punte.outcome.v1", "ro.punte.case.closed.v1"}
    for entry in erased:
        assert entry["value"]["erased_rule"] == "closed-case" and entry["value"]["erased_at"]
    assert len(erased) == len(entries) == 4 and kept == 0, "every value of the case is gone, every entry stays"
    # /verify passes, and so does the offline verifier on an export made after the purge,
    # consistent with the checkpoint an auditor kept from before it.
    verify = await audit.client.get("/verify", headers=AUDITOR)
    assert verify.status_code == 200 and verify.json()["verified"]
    after = await audit.export()
    previous = tmp_path / "before.txt"
    previous.write_bytes(unpacked(first).read(offline.CHECKPOINT) or b"")
    key = await verifier_key(audit)
    verified = verify_offline(tmp_path, after, key)
    assert verified["ok"] and verified["checked"] == verified["size"] and verified["erased"] == {"closed-case": 4}
    path = tmp_path / "after.tar"
    path.write_bytes(after)
    consistent = subprocess.run([sys.executable, "-m", "punte.cli", "audit", "verify", str(path), "--key", key,
                                 "--previous", str(previous), "--json"], capture_output=True, text=True)
    assert consistent.returncode == 0, consistent.stdout
    lines = list(offline.described(unpacked(after)))
    [report_line] = [line for line in lines if line["event_type"] == "ro.punte.report.submitted.v2"]
    assert report_line["value"]["state"] == "erased" and report_line["value"]["erased_rule"] == "closed-case"
    # Break-glass on an erased value: a clear refusal, when and by which rule.
    gone = await audit.client.post(f"/entries/{report_line['index'] + 1}/value", headers=AUDITOR)
    detail = gone.json()["detail"]
    assert (gone.status_code, detail["code"], detail["erased_rule"]) == (410, "ERASED", "closed-case")
    assert detail["erased_at"] == report_line["value"]["erased_at"]


@pytest.mark.broker
async def test_the_schedule_follows_the_network_and_never_a_forgery(audit):
    now = datetime.now(timezone.utc)
    forged = CloudEvent.new("ro.punte.case.closed.v1", "/punte/referral", {
        "case_id": CASE, "closed_at": now.isoformat(), "report_ids": [REPORT]}, subject=CASE)
    await audit.receive(("punte.ingress.isj-bc", report()), ("punte.cases", case_opened()),
                        ("punte.cases", forged))
    assert await audit.purge(now + timedelta(days=10_000)) == 0, "an unsigned closing erases nothing"
    # A refused report (never a case) is erased by the unconfirmed-report rule (90 days).
    await audit.receive(("punte.ingress.isj-bc", report("rep-refused")),
                        ("punte.delivery.isj-bc", outcome("rep-refused", "rejected")))
    assert await audit.purge(now + timedelta(days=89)) == 0
    assert await audit.purge(now + timedelta(days=91)) == 1
    [refused] = [e for e in await audit.entries() if e["event_id"] == "rep-refused"]
    assert (refused["value"]["state"], refused["value"]["erased_rule"]) == ("erased", "unconfirmed-report")
    # A case closed and then reopened is kept.
    await audit.receive(("punte.referrals", case_closed(closed_at=now - timedelta(days=3))),
                        ("punte.referrals", signed("ro.punte.case.reopened.v1", "/punte/referral", {
                            "case_id": CASE, "reopened_at": now.isoformat(), "reopened_by": "cm.dgaspc.maria"})))
    assert await audit.purge(now + timedelta(days=10_000)) == 0
    # Closed again: erased by the closed-case rule (1825 days from closing), not before.
    closed_at = now - timedelta(days=1)
    await audit.receive(("punte.referrals", case_closed(closed_at=closed_at)))
    assert await audit.purge(closed_at + timedelta(days=1824)) == 0
    assert await audit.purge(closed_at + timedelta(days=1826)) == 2
    # A late message about the erased case is recorded, its value not kept.
    await audit.receive(("punte.ingress.isj-bc", CloudEvent.new(
        "ro.punte.referral.command.v1", "/institutions/isj-bc", {"case_id": CASE, "note": STORY})))
    [late] = [e for e in await audit.entries() if e["event_type"] == "ro.punte.referral.command.v1"]
    assert late["value"]["state"] == "erased"


@pytest.mark.broker
async def test_an_old_log_of_version_1_still_verifies_and_shows_no_value(audit, tmp_path):
    # Entries appended before version 2 hold their exact records, value included.
    old = [Record("punte.ingress.isj-bc", 0, i, 1_700_000_000_000, None, report(f"old-{i}").headers(),
                  report(f"old-{i}").body()) for i in range(3)]
    async with audit.engine.begin() as conn:
        await conn.execute(sa.insert(audit_entries), [
            {"seq": i + 1, "topic": r.topic, "partition": 0, "offset": r.offset, "event_id": f"old-{i}",
             "event_type": "ro.punte.report.submitted.v2", "recorded_at": datetime.now(timezone.utc),
             "entry": canonical_v1(r), "leaf_hash": leaf_hash(canonical_v1(r))} for i, r in enumerate(old)])
    audit.offsets["punte.ingress.isj-bc"] = 3
    await audit.receive(("punte.ingress.isj-bc", report()))
    entries = await audit.entries()
    assert [(e["log_version"], e["value"]["state"]) for e in entries] == [
        (1, "in-v1-leaf"), (1, "in-v1-leaf"), (1, "in-v1-leaf"), (2, "sealed")]
    assert entries[0]["entry_base64"] is None and "value" not in entries[0]["record"]
    exported = await audit.export()
    for secret in SECRETS:
        assert secret not in readable(json.dumps(entries))
        assert secret not in readable(exported.decode("utf-8", errors="replace"))
    verified = verify_offline(tmp_path, exported, await verifier_key(audit))
    assert verified["ok"] and verified["checked"] == 4 and verified["withheld"] == 3
    files = unpacked(exported).files
    assert tiles.decode_bundle(files["tile/entries/000.p/4"])[:3] == [b"", b"", b""], "withheld: no bytes"
    # A changed leaf hash of a withheld entry (its only trace) no longer rebuilds the signed root.
    tile = bytearray(files["tile/0/000.p/4"])
    tile[32:64] = bytes(32)
    name, public = checkpoint.parse_verifier_key(await verifier_key(audit))
    bad = offline.verify_export(offline.MemorySource({**files, "tile/0/000.p/4": bytes(tile)}), name, public)
    assert not bad.ok and bad.problem == "the entries do not rebuild the signed root"
