"""The operator's command line against a network it reaches by URL and token only, as an
operator on call for a county would (issue #15 item 4, decision 0038): `punte status` says
the network is healthy and exits 0, then, with a service stopped, says which and exits 1;
`audit`, `webhooks` and `deadletters` answer the same way; a refused call is one line.

Each command runs as its own process, from a folder with no state of any network, so
nothing but --url, --token and --bootstrap tells it where the network is."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from punte.stack import SERVICES, Stack
from tests.e2e.conftest import WEBHOOK_INSTITUTION, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.broker]
ROOT = Path(__file__).resolve().parents[2]


def broker_env(network: Stack) -> dict[str, str]:
    """On Apache Kafka the operator reads offsets as the cluster's admin (PUNTE_KAFKA_*)."""
    if network.kafka is None:
        return {}
    return {"PUNTE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "PUNTE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "PUNTE_KAFKA_USERNAME": network.kafka.admin_user, "PUNTE_KAFKA_PASSWORD": network.kafka.admin_password}


def punte(network: Stack, folder: Path, *args: str, token: str | None = None,
          remote: bool = True) -> subprocess.CompletedProcess[str]:
    """`punte <args>` as a process run in ``folder``; remote: with each service's URL and the token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNTE_")}
    env |= {"PYTHONPATH": str(ROOT), "COLUMNS": "200", **broker_env(network)}
    where = [f"--url={s}={network.url(s)}" for s in SERVICES] + (["--token", token] if token else [])
    return subprocess.run([sys.executable, "-m", "punte.cli", *args, *(where if remote else [])],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=180)


def settled_status(network: Stack, folder: Path, token: str, timeout: float = 120) -> dict:
    """`punte status --json` once it exits 0 and the trail has audited everything on the
    broker (other tests may have left messages in flight, and the trail takes what comes a
    batch a second while records come: decision 0033, step 40)."""
    deadline = time.monotonic() + timeout
    while True:
        done = punte(network, folder, "status", "--json", "--bootstrap", network.kafka_bootstrap or "", token=token)
        settled = done.returncode == 0 and json.loads(done.stdout)["audit"]["state"] == "verified"
        if settled or time.monotonic() > deadline:
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
            return json.loads(done.stdout)
        time.sleep(2)


def test_status_by_url_and_token_is_healthy_then_names_a_stopped_service(network: Stack, tmp_path: Path):
    token = asyncio.run(sign_in(network, "operator"))  # from the issuer, as any operator signs in

    found = settled_status(network, tmp_path, token)
    assert {name: s["state"] for name, s in found["services"].items()} == {s: "ready" for s in SERVICES}
    assert found["audit"]["state"] == "verified" and found["problems"] == [] and found["lagging"] == []
    assert found["broker"]["state"] == "up" and found["broker"]["epoch"]["id"]
    assert found["consistent"] == {"every_service_on_the_broker_epoch": True}
    # Every group of every service, with its lag from the broker's offsets: none behind.
    groups = {c["group"] for s in found["services"].values() for c in s["consumers"]}
    assert {"punte-intake", "punte-referral-cases", "punte-notification", "punte-audit"} <= groups
    assert groups <= set(found["broker"]["lag"])
    assert all(sum(found["broker"]["lag"][g].values()) <= 1000 for g in groups)
    assert not any(c["stopped"] for s in found["services"].values() for c in s["consumers"])

    table = punte(network, tmp_path, "status", token=token)
    assert table.returncode == 0, table.stdout + table.stderr
    # The audit's state, verified or (what came in the last second) lagging within the limit.
    assert all(name in table.stdout for name in SERVICES)
    assert "verified" in table.stdout or "lagging" in table.stdout

    # Stopped, not crashed: the supervisor does not start it again until it is adopted back.
    with network.supervisor_lock:
        network.stop_process("referral")
    try:
        down = punte(network, tmp_path, "status", token=token)
        assert down.returncode == 1, down.stdout + down.stderr
        [line] = [line for line in down.stdout.splitlines() if line.startswith("referral: down")]
        assert f"referral GET {network.url('referral')}/health/ready: cannot connect" in line
        assert "Traceback" not in down.stdout + down.stderr
        as_json = json.loads(punte(network, tmp_path, "status", "--json", token=token).stdout)
        assert as_json["services"]["referral"]["state"] == "down" and as_json["exit_code"] == 1
        assert all(as_json["services"][s]["state"] == "ready" for s in SERVICES if s != "referral")
    finally:
        network.start_process("referral")
        network.wait_ready(120, ["referral"])
        network.supervisor_adopt("referral")
    settled_status(network, tmp_path, token)


def test_audit_webhooks_and_dead_letters_by_url_and_token(network: Stack, tmp_path: Path):
    token = asyncio.run(sign_in(network, "operator"))
    verify = punte(network, tmp_path, "audit", "verify", "--json", token=token)
    assert verify.returncode in (0, 3), verify.stdout + verify.stderr  # 3: messages in flight, not audited yet
    assert json.loads(verify.stdout)["state"] in ("verified", "lagging")

    hooks = punte(network, tmp_path, "webhooks", "log", WEBHOOK_INSTITUTION, "--json", token=token)
    assert hooks.returncode == 0, hooks.stderr
    assert isinstance(json.loads(hooks.stdout), list)
    for service in SERVICES:
        letters = punte(network, tmp_path, "deadletters", "list", service, "--json", token=token)
        assert letters.returncode == 0, letters.stderr
        assert isinstance(json.loads(letters.stdout), list)

    # An auditor's export needs an auditor's token: the operator's is refused, in one line.
    export = punte(network, tmp_path, "audit", "export", str(tmp_path / "trail.tar"), token=token)
    assert export.returncode == 1 and "Traceback" not in export.stderr
    assert export.stderr.strip().splitlines() == [
        f"audit GET {network.url('audit')}/export: 403 Forbidden: " + export.stderr.split("403 Forbidden: ")[1].strip()]
    auditor = asyncio.run(sign_in(network, "auditor"))
    exported = punte(network, tmp_path, "audit", "export", str(tmp_path / "trail.tar"), token=auditor)
    assert exported.returncode == 0, exported.stderr
    key = exported.stdout.split("--key '")[1].split("'")[0]
    offline = punte(network, tmp_path, "audit", "verify", str(tmp_path / "trail.tar"), "--key", key, remote=False)
    assert offline.returncode == 0, offline.stdout + offline.stderr

    refused = punte(network, tmp_path, "deadletters", "list", "intake", token="not-a-token")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [f"intake GET {network.url('intake')}/dead-letters: 401 Unauthorized: "
                                           + refused.stderr.split("401 Unauthorized: ")[1].strip()]


def test_the_local_network_needs_no_url(network: Stack, tmp_path: Path):
    """`punte status --state-dir` of `punte up`: the same survey, tokens minted locally."""
    done = punte(network, tmp_path, "status", "--json", "--state-dir", str(network.state_dir), remote=False)
    found = json.loads(done.stdout)
    assert done.returncode == found["exit_code"] in (0, 3), done.stdout[-3000:]
    assert found["broker"]["state"] == "up" and found["audit"]["state"] in ("verified", "lagging")
    assert {"intake", "referral", "notification", "audit"} <= set(found["supervision"])
