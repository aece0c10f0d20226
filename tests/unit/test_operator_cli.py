"""The operator's command line (decision 0038): which network a command talks to (--url,
PUNTE_URL, the config file's networks, else the local one), what `punte status` concludes
from what it found and with which exit code, and every refused or failed HTTP call said in
one line, against a real HTTP server."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from punte.cli import app
from punte.remote import OperatorError, failure_line, resolve
from punte.status import assess, read_metrics
from runtime.metrics import NAMES, ConsumerState, Snapshot, exposition

RUNNER = CliRunner()


# --- which network -------------------------------------------------------------------

def test_a_url_with_service_in_it_names_every_service():
    network = resolve(["https://punte.bacau.example/{service}"], token="t")
    assert network.url("audit") == "https://punte.bacau.example/audit"
    assert network.token_for("auditor") == "t" and not network.local


def test_service_urls_one_by_one_and_a_missing_one_is_said():
    network = resolve(["intake=http://10.0.0.1:8000", "audit=http://10.0.0.2:8000/"], token="t")
    assert network.url("audit") == "http://10.0.0.2:8000"
    with pytest.raises(OperatorError, match="no URL for referral: add --url referral=") as refused:
        network.url("referral")
    assert refused.value.code == 2


@pytest.mark.parametrize("given", [["https://punte.example"], ["intake"], ["police=http://x:1"]])
def test_a_url_that_names_no_service_is_refused(given):
    with pytest.raises(OperatorError) as refused:
        resolve(given, token="t")
    assert refused.value.code == 2 and "{service}" in str(refused.value)


def test_no_token_for_a_remote_network_is_said_before_any_call():
    with pytest.raises(OperatorError, match="no token for") as refused:
        resolve(["http://punte-{service}:8000"]).token_for()
    assert refused.value.code == 2


def test_a_named_network_of_the_config_file(tmp_path: Path):
    (tmp_path / "bacau.token").write_text("from-a-file\n")
    config = tmp_path / "remote.toml"
    config.write_text(f"""
[networks.bacau]
url = "https://{{service}}.punte.bacau.example"
token_file = "{tmp_path / 'bacau.token'}"
bootstrap = "kafka.bacau.example:9093"
[networks.bacau.services]
audit = "https://audit.internal.example"
[networks.bacau.kafka]
security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
username = "operator"
password = "synthetic"

[networks.neamt]
services = {{ intake = "https://intake.neamt.example" }}
token_command = "{sys.executable} -c 'print(\\"fetched\\")'"
""")
    bacau = resolve(network="bacau", config=config)
    assert bacau.url("intake") == "https://intake.punte.bacau.example"
    assert bacau.url("audit") == "https://audit.internal.example"
    assert bacau.token_for() == "from-a-file" and bacau.bootstrap == "kafka.bacau.example:9093"
    assert bacau.kafka is not None and bacau.kafka.kafka_username == "operator"
    neamt = resolve(network="neamt", config=config)
    assert neamt.token_for() == "fetched" and neamt.url("intake") == "https://intake.neamt.example"
    # A token given on the command line (or PUNTE_TOKEN) wins over the file's.
    assert resolve(token="given", network="neamt", config=config).token_for() == "given"
    with pytest.raises(OperatorError, match=r"no \[networks.vaslui\] \(known: bacau, neamt\)"):
        resolve(network="vaslui", config=config)


def test_without_url_or_network_the_local_network_or_a_clear_refusal(tmp_path: Path):
    with pytest.raises(OperatorError, match="the local one is not running") as refused:
        resolve(state_dir=tmp_path)
    assert refused.value.code == 2
    (tmp_path / "runtime.json").write_text(json.dumps({
        "services": {"identity": "http://127.0.0.1:1", "intake": "http://127.0.0.1:2"},
        "kafka_bootstrap": "127.0.0.1:3", "broker": "tansu"}))
    local = resolve(state_dir=tmp_path)
    assert local.local and local.url("intake") == "http://127.0.0.1:2" and local.bootstrap == "127.0.0.1:3"


# --- what status concludes -------------------------------------------------------------

# --- what a command loads ------------------------------------------------------------

def test_the_operators_commands_load_no_web_framework_database_layer_nor_demo():
    """An operator on call runs many short commands: the CLI module alone loads none of the
    services' FastAPI, SQLAlchemy or the demo (each command imports what it needs), and a
    remote command run to its end (here: the service cannot be reached) loads none either."""
    heavy = ("fastapi", "sqlalchemy", "punte.demo", "punte.identity", "runtime.broker_epoch")
    probe = ("import sys, runpy\n"
             "sys.argv = ['punte', 'deadletters', 'list', 'intake', '--url', 'intake=http://127.0.0.1:1',"
             " '--token', 't']\n"
             "try:\n    runpy.run_module('punte.cli', run_name='__main__')\n"
             "except SystemExit as done:\n    print('exit', done.code)\n"
             f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    assert "intake GET http://127.0.0.1:1/dead-letters: cannot connect" in done.stderr, done.stderr[-2000:]
    assert done.stdout.splitlines()[-2:] == ["exit 1", "[]"], done.stdout + done.stderr[-2000:]


def service(state: str = "ready", **more) -> dict:
    return {"url": "http://x", "state": state, "problems": [], "consumers": [
        {"group": "punte-intake", "stopped": False, "assigned": True}], **more}


def found(**changes) -> dict:
    base = {"network": "test", "services": {name: service() for name in ("intake", "referral", "notification",
                                                                         "audit")},
            "broker": {"bootstrap": "b:9092", "state": "up", "lag": {"punte-intake": {}}},
            "audit": {"state": "verified", "entries": 10}}
    return base | changes


def test_a_healthy_network_exits_0():
    assert assess(found(), max_lag=1000) == ([], [], 0)


def test_a_service_down_is_a_problem_with_why():
    services = found()["services"] | {"referral": service("down", problems=["referral GET …: cannot connect"])}
    problems, _, code = assess(found(services=services), 1000)
    assert code == 1 and problems == ["referral: down — referral GET …: cannot connect"]


def test_a_stopped_consumer_is_a_problem_with_the_command_to_resume_it():
    stopped = service(consumers=[{"group": "punte-referral-cases", "stopped": True, "assigned": True}],
                      stopped_why={"punte-referral-cases": "consecutive-failures at punte.cases/1/7"})
    problems, _, code = assess(found(services=found()["services"] | {"referral": stopped}), 1000)
    assert code == 1
    assert problems == ["referral: consumer punte-referral-cases stopped (consecutive-failures at "
                        "punte.cases/1/7): punte consumers resume referral punte-referral-cases"]


def test_lag_beyond_the_limit_exits_3_and_names_the_partitions():
    lag = {"punte-audit": {"punte.cases[0]": 700, "punte.cases[1]": 400}, "punte-intake": {"punte.gateway[0]": 5}}
    problems, lagging, code = assess(found(broker={"bootstrap": "b", "state": "up", "lag": lag}), 1000)
    assert (problems, code) == ([], 3)
    assert lagging == ["consumer group punte-audit: 1100 messages behind (punte.cases[0] 700, punte.cases[1] 400)"]
    assert assess(found(broker={"bootstrap": "b", "state": "up", "lag": lag}), 2000)[2] == 0


def test_without_the_broker_the_services_own_lag_figures_count():
    lagging_service = service(consumers=[{"group": "punte-notification", "stopped": False, "lag_reported": 5000}])
    _, lagging, code = assess(found(broker={"bootstrap": None, "state": "not asked"},
                                    services=found()["services"] | {"notification": lagging_service}), 1000)
    assert code == 3 and lagging == ["notification: consumer punte-notification 5000 messages behind"]


@pytest.mark.parametrize(("audit", "code"), [
    ({"state": "failed", "problems": ["root mismatch at 12"]}, 1),
    ({"state": "unknown", "problems": ["audit GET …/verify: 401 Unauthorized: INVALID_TOKEN"]}, 1),
    ({"state": "lagging", "not_audited": 5000, "lagging": []}, 3),
    ({"state": "lagging", "not_audited": 3, "lagging": []}, 0),  # in flight on a live network
])
def test_the_audit_not_verifying_is_a_problem_and_far_behind_is_lag(audit, code):
    assert assess(found(audit=audit), 1000)[2] == code


def test_a_service_on_another_broker_epoch_than_the_broker_is_a_problem():
    services = {name: service(broker={"epoch": "e1", "rewound": True}) for name in ("intake", "referral",
                                                                                    "notification", "audit")}
    broker = {"bootstrap": "b", "state": "up", "lag": {}, "epoch": {"id": "e1"}}
    assert assess(found(services=services, broker=broker), 1000)[2] == 0
    services["audit"] = service(broker={"epoch": "e0", "rewound": True})
    problems, _, code = assess(found(services=services, broker=broker), 1000)
    assert code == 1 and problems == ["audit: reads broker epoch e0, the broker's is e1"]


def test_a_process_the_local_supervisor_gave_up_on_is_a_problem():
    problems, _, code = assess(found(supervision={"mail": {"state": "given up", "restarts": 5,
                                                           "reason": "mail failed 5 times"}}), 1000)
    assert code == 1 and problems == ["mail: given up — mail failed 5 times"]


def test_metrics_are_read_by_the_names_the_services_expose():
    shot = Snapshot("referral", consumers=[
        ConsumerState("punte-referral-cases", True, True, 10, 1, 0, {}, 0.0),
        ConsumerState("punte-referral-commands", False, False, 3, 0, 0, {("punte.ingress.dgaspc-bc", 0): 4}, 0.0)],
                    outbox={"pending": 2, "parked": 1}, dead_letters={"MALFORMED_PAYLOAD": 2, "BAD_SIGNATURE": 1},
                    broker_provisioned=True)
    text = exposition(shot).decode()
    assert {"punte_consumer_stopped", "punte_outbox_rows", "punte_dead_letters"} <= set(NAMES)
    seen = read_metrics(text)
    assert seen["consumers"] == [{"group": "punte-referral-cases", "stopped": True, "assigned": True},
                                 {"group": "punte-referral-commands", "stopped": False, "assigned": False,
                                  "lag_reported": 4}]
    assert seen["outbox"] == {"pending": 2, "parked": 1} and seen["dead_letters"] == 3
    assert seen["broker_provisioned"] is True


# --- one line for every HTTP failure ----------------------------------------------------

@contextlib.contextmanager
def answering(answer: Callable[[BaseHTTPRequestHandler], tuple[bytes, int, str]]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 (its base URL) whose every request gets ``answer``'s
    (body, status, content type)."""
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body, code, kind = answer(self)
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815 (http.server's names)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def refusing_server() -> Iterator[str]:
    """A real HTTP server answering as a service that refuses: 403 with the project's
    reason shape on /dead-letters, 500 in plain text elsewhere."""
    def refuse(request: BaseHTTPRequestHandler) -> tuple[bytes, int, str]:
        if request.path.startswith("/dead-letters"):
            return json.dumps({"detail": {"code": "FORBIDDEN", "message": "the operator role is "
                                          "needed\nfor this"}}).encode(), 403, "application/json"
        return b"Internal Server Error\n  at line 3", 500, "text/plain"

    with answering(refuse) as url:
        yield url


def test_a_refusal_is_one_line_with_its_reason_code(refusing_server: str):
    result = RUNNER.invoke(app, ["deadletters", "list", "intake", "--url", f"intake={refusing_server}",
                                 "--token", "t"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [f"intake GET {refusing_server}/dead-letters: 403 Forbidden: FORBIDDEN: "
                                          "the operator role is needed for this"]


def test_a_server_error_and_no_connection_are_one_line_each(refusing_server: str):
    result = RUNNER.invoke(app, ["webhooks", "log", "dgaspc-bc", "--url", f"notification={refusing_server}",
                                 "--token", "t"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"notification GET {refusing_server}/webhooks/deliveries"
                                          ": 500 Internal Server Error: Internal Server Error at line 3"]
    closed = RUNNER.invoke(app, ["audit", "verify", "--url", "http://127.0.0.1:9/{service}", "--token", "t"])
    assert closed.exit_code == 1
    [line] = closed.stderr.splitlines()
    assert line.startswith("audit GET http://127.0.0.1:9/audit/verify: cannot connect")


def test_status_of_a_network_that_does_not_answer_exits_1_and_says_so_per_service():
    result = RUNNER.invoke(app, ["status", "--url", "http://127.0.0.1:9/{service}", "--token", "t"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    for name in ("intake", "referral", "notification", "audit"):
        assert f"{name}: down — {name} GET http://127.0.0.1:9/{name}/health/ready: cannot connect" in result.stdout
    assert "audit: not verified" in result.stdout and "Traceback" not in result.output


def test_a_bare_401_from_a_proxy_says_what_to_check():
    import httpx

    answer = httpx.Response(401, content=b"", request=httpx.Request("GET", "http://x/stats"))
    assert failure_line("intake", "GET", "http://x/stats", answer) == (
        "intake GET http://x/stats: 401 Unauthorized: the token is missing, expired or not from this network's issuer")


def test_version():
    result = RUNNER.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("punte ")


def test_a_config_file_others_can_read_is_warned_of(tmp_path: Path):
    config = tmp_path / "remote.toml"
    config.write_text('[networks.bacau]\nurl = "http://127.0.0.1:9/{service}"\ntoken = "synthetic"\n')
    config.chmod(0o644)
    result = RUNNER.invoke(app, ["deadletters", "list", "intake", "--network", "bacau", "--config", str(config)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"{config} can be read by others: chmod 600 it"
    config.chmod(0o600)
    quiet = RUNNER.invoke(app, ["deadletters", "list", "intake", "--network", "bacau", "--config", str(config)])
    assert "can be read by others" not in quiet.stderr
    assert quiet.stderr.splitlines()[0].startswith("intake GET http://127.0.0.1:9/intake/dead-letters: cannot connect")


def test_rotate_secret_asks_the_network_for_a_new_one_and_prints_only_the_secret():
    """`punte webhooks rotate-secret`: the secret is made by the network (POST
    /webhooks/secret) and printed alone, so it can go straight into a secret store."""
    asked: list[tuple[str, dict]] = []

    def rotate(request: BaseHTTPRequestHandler) -> tuple[bytes, int, str]:
        asked.append((request.path, json.loads(request.rfile.read(int(request.headers["Content-Length"])))))
        return json.dumps({"institution": "dgaspc-bc", "webhook": True, "secret": "whsec_c2ludGV0aWM=",
                           "secret_created_at": "2026-11-30T12:00:00Z", "signatures": ["v1", "v1a"]}).encode(), \
            201, "application/json"

    with answering(rotate) as url:
        result = RUNNER.invoke(app, ["webhooks", "rotate-secret", "dgaspc-bc", "--url", f"notification={url}",
                                     "--token", "t"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "whsec_c2ludGV0aWM=\n"
    assert asked == [("/webhooks/secret", {"institution": "dgaspc-bc"})]
