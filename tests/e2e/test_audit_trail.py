"""The audit trail of the running network, as an auditor and a witness use it: reads of
cases are on record, checkpoints are signed and cosigned, the log only grows, and an
export verifies offline with nothing but the log's key — until someone edits it."""
from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import tarfile
import time
from urllib.parse import quote

import httpx
import pytest

from contracts.events import EventType
from punte.stack import Stack
from runtime.kafka import make_producer
from services.audit.domain import checkpoint, merkle, tiles
from tests.e2e.conftest import Deliveries, institution_system, sign_in, wait_until

# On the session's broker: Tansu, and Apache Kafka with --broker kafka (decision 0031).
pytestmark = [pytest.mark.e2e, pytest.mark.broker]


def report() -> dict:
    return {"reporter": {"institution": "dsp-bc", "role": "family-doctor"}, "channel": "family-doctor",
            "child": {"cnp": "5130222041232", "uat_siruta": 21891, "county": "BC"},
            "risks": [{"category": "health_risk"}], "description": "Date sintetice."}


async def test_an_auditor_and_a_witness_check_the_trail_of_the_running_network(network: Stack, tmp_path):
    producer = make_producer(network.kafka_bootstrap)
    await producer.start()
    deliveries = Deliveries(network.kafka_bootstrap)
    await deliveries.start()
    doctor = institution_system(network, "dsp-bc", producer)
    try:
        sent = doctor.report(report())
        await doctor.send(sent)

        async def answered():
            """the report was answered"""
            return deliveries.outcome_of(sent.id)
        [(_, outcome)] = await wait_until(answered)
        case_id = outcome["case_id"]
    finally:
        await deliveries.stop()
        await producer.stop()

    auditor = {"Authorization": f"Bearer {await sign_in(network, 'auditor')}",
               "X-Punte-Purpose": f"audit-inspection; {quote('control anual')}"}
    lead = outcome["informed"][0]
    reader = {"Authorization": f"Bearer {await sign_in(network, f'cm.{lead}')}",
              "X-Punte-Purpose": f"case-work; {quote('evaluare inițială')}"}
    async with httpx.AsyncClient(timeout=60) as client:
        # A case manager reads the case; the read is on record with its purpose.
        assert (await client.get(f"{network.url('intake')}/v1/cases/{case_id}", headers=reader)).status_code == 200

        async def read_recorded():
            """the read of the case reached the audit trail"""
            found = (await client.get(f"{network.url('audit')}/entries", headers=auditor, params={
                "event_type": EventType.ACCESS.value, "case_id": case_id})).json()["entries"]
            return [e for e in found if e["actor"] == f"cm.{lead}" and e["purpose"] == "case-work"]
        [access] = (await wait_until(read_recorded))[:1]
        # The entry commits to the access event's digest; the event itself is sealed.
        recorded = json.loads(base64.b64decode(access["entry_base64"]))
        assert recorded["topic"] == "punte.access" and "value" not in recorded
        assert access["value"]["state"] == "sealed"
        # Another institution taking part opens the case: the lead is told who, when, why.
        other = outcome["informed"][1]
        visitor = {"Authorization": f"Bearer {await sign_in(network, f'cm.{other}')}",
                   "X-Punte-Purpose": f"verification; {quote('consult medical')}"}
        assert (await client.get(f"{network.url('intake')}/v1/cases/{case_id}", headers=visitor)).status_code == 200
        lead_inbox = {"Authorization": reader["Authorization"]}

        async def lead_told():
            """the lead was told another institution opened its case"""
            entries = (await client.get(f"{network.url('notification')}/inbox", headers=lead_inbox,
                                        params={"kind": "case-accessed"})).json()["entries"]
            return [e for e in entries if e["case_id"] == case_id]
        [told] = [e for e in await wait_until(lead_told) if "break-glass" not in e["summary_en"]]
        # Why, as the purpose's code says it: the reader's own words stay in the trail.
        assert other in told["summary_ro"] and "Verificarea unei sesizări" in told["summary_ro"]
        assert "consult medical" not in told["summary_ro"] + told["summary_en"]
        # The reader's own words are in the sealed value: an auditor opens it only by
        # break-glass, with a purpose, and the lead is told of that too.
        path = f"{network.url('audit')}/entries/{access['seq']}/value"
        refused = await client.post(path, headers={"Authorization": auditor["Authorization"]})
        assert (refused.status_code, refused.json()["detail"]["code"]) == (422, "PURPOSE_REQUIRED")
        opened = await client.post(path, headers={"Authorization": auditor["Authorization"],
                                                  "X-Punte-Purpose": "dpo-request"})
        assert opened.status_code == 200, opened.text
        assert json.loads(base64.b64decode(opened.json()["value_base64"]))["purpose_text"] == "evaluare inițială"

        async def lead_told_of_break_glass():
            """the lead was told an auditor opened a sealed value of its case"""
            return [e for e in await lead_told() if "break-glass" in e["summary_en"]]
        [glass] = await wait_until(lead_told_of_break_glass)
        assert "Data protection officer" in glass["summary_en"]
        timeline = (await client.get(f"{network.url('audit')}/cases/{case_id}/timeline", headers=auditor)).json()
        assert {"ro.punte.case.opened.v1", "ro.punte.referral.requested.v1"} <= {s["event_type"] for s in timeline}

        # Two checkpoints: the later one is consistent with the earlier one.
        first = (await client.post(f"{network.url('audit')}/checkpoints", headers=auditor)).text
        await asyncio.sleep(0.5)  # the access event of the next search lands after this checkpoint
        await client.get(f"{network.url('audit')}/entries", headers=auditor, params={"case_id": case_id})
        second = await wait_until(lambda: _grown(client, network, auditor, first))
        key = (await client.get(f"{network.url('audit')}/log-key", headers=auditor)).json()
        name, public = checkpoint.parse_verifier_key(key["verifier_key"])
        old, new = checkpoint.verify_note(first, name, public), checkpoint.verify_note(second, name, public)
        proof = (await client.get(f"{network.url('audit')}/proofs/consistency", headers=auditor,
                                  params={"first": old.size, "second": new.size})).json()["proof"]
        assert merkle.verify_consistency(old.size, new.size, old.root, new.root,
                                         [base64.b64decode(h) for h in proof])

        # A peer institution witnesses the newer checkpoint with its own key.
        witness = network.state.institution_key("isj-bc")
        line = checkpoint.cosign(second, "isj-bc", witness.private, int(time.time()))
        cosigned = await client.post(f"{network.url('audit')}/checkpoints/{new.size}/cosignatures",
                                     content=line, headers={"Content-Type": "text/plain",
                                                            "Authorization": f"Bearer {await sign_in(network, 'sys.isj-bc')}"})
        assert cosigned.status_code == 200
        assert checkpoint.verify_cosignature(cosigned.text, "isj-bc", witness.public_raw()) > 0

        exported = (await client.get(f"{network.url('audit')}/export", headers=auditor)).content
    export = tmp_path / "trail.tar"
    export.write_bytes(exported)
    verify = [sys.executable, "-m", "punte.cli", "audit", "verify", str(export), "--key", key["verifier_key"], "--json"]
    ok = subprocess.run(verify, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    with tarfile.open(export) as archive:
        archive.extractall(tmp_path / "extracted", filter="data")  # what `tar -xf` does
    folder = tmp_path / "extracted" / "punte-audit"
    signed_size = checkpoint.parse((folder / "checkpoint").read_text()).checkpoint.size
    assert json.loads(ok.stdout)["checked"] == signed_size

    # Someone edits one entry of the extracted export: the verifier names it.
    bundles = folder / "tile" / "entries"  # the first bundle: full, or partial (000.p/<width>)
    bundle = bundles / "000" if (bundles / "000").is_file() else next((bundles / "000.p").iterdir())
    entries = tiles.decode_bundle(bundle.read_bytes())
    raw = bytearray(entries[4])
    raw[10] ^= 1
    entries[4] = bytes(raw)
    bundle.write_bytes(tiles.encode_bundle(entries))
    verify[verify.index(str(export))] = str(folder)
    bad = subprocess.run(verify, capture_output=True, text=True)
    assert bad.returncode == 1 and json.loads(bad.stdout)["first_bad"] == 4, bad.stdout


async def _grown(client: httpx.AsyncClient, network: Stack, auditor: dict, first: str):
    """a newer checkpoint than the first"""
    note = (await client.post(f"{network.url('audit')}/checkpoints", headers=auditor)).text
    return note if note.splitlines()[1] != first.splitlines()[1] else None
