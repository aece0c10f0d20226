"""The whole network as processes, started once for the end-to-end tests."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from contracts.events import EventType
from contracts.reference import institutions
from punte import recipients
from punte.institution import InstitutionSystem, fetch_intake_keys
from punte.mailbox import messages as mailbox_messages
from punte.stack import Stack
from runtime.cloudevents import CloudEvent, decode
from runtime.kafka import client_options
from tests.e2e import leak_scan
from tests.e2e.spans import SpanReceiver


@dataclass
class Hook:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class WebhookReceiver:
    """An institution's system receiving Punte's webhooks over real HTTP; the first
    ``failures`` requests of each delivery are answered 503, to show retries."""

    failures: int = 2
    seen: list[Hook] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server
        return f"http://127.0.0.1:{self.server.server_address[1]}/punte"

    def start(self) -> "WebhookReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                tries = sum(1 for hook in receiver.seen
                            if hook.headers.get("punte-delivery-id") == headers.get("punte-delivery-id"))
                code = 503 if tries < receiver.failures else 200
                receiver.seen.append(Hook(headers, body, code))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


# The institution whose system takes webhooks in the end-to-end network.
WEBHOOK_INSTITUTION = "dgaspc-bc"
# Institutions of restricted kinds whose webhooks the need-to-know matrix reads too.
NEED_TO_KNOW_HOOKS = ("ipj-bc", "dsp-bc")


@pytest.fixture(scope="session")
def webhook_receiver():
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def span_receiver():
    """The collector every service of the end-to-end network sends its spans to."""
    receiver = SpanReceiver()
    yield receiver
    receiver.stop()


# Package scope: the network stops, and its leak scan runs, when the end-to-end tests end,
# before the integration tests put their own messages (reports in clear among them, for the
# transition) on the same broker.
@pytest.fixture(scope="package")
def network(infrastructure, tmp_path_factory, webhook_receiver, span_receiver):
    state_dir = tmp_path_factory.mktemp("e2e") / "state"
    state_dir.mkdir()
    # The embedded default's people, without quiet hours or digest waits (the tests run at
    # any hour; the digest is shown in tests/integration/test_notification_dispatch.py).
    recipients.write(state_dir / "recipients.yaml", recipients.demo_recipients(
        institutions().values(), digest_minutes=0, quiet_hours=None,
        webhooks={WEBHOOK_INSTITUTION: webhook_receiver.url, **{i: webhook_receiver.url for i in NEED_TO_KNOW_HOOKS}}))
    # Every service exports its spans, as to a collector, within half a second (tests/e2e/test_traces.py).
    tracing = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": span_receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "500"}
    stack = (Stack(state_dir, database_url=infrastructure.database_url, broker_kind="kafka",
                   kafka=infrastructure.kafka.cluster, kafka_credentials_file=infrastructure.kafka.credentials_file,
                   extra_env=tracing)
             if infrastructure.kafka is not None else
             Stack(state_dir, kafka_bootstrap=infrastructure.kafka_bootstrap, database_url=infrastructure.database_url,
                   extra_env=tracing))
    started_ms = int(time.time() * 1000)
    try:
        stack.start()
        yield stack
        # After every end-to-end test: no database but intake's vault, no topic, no log, no
        # audit export and nothing sent keeps a synthetic child's identity or story.
        leak_scan.scan(stack.database_url, stack.kafka_bootstrap, state_dir / "logs", stack.url("audit"),
                       _token(stack, "auditor"), people_messages(stack, webhook_receiver), since_ms=started_ms)
    finally:
        stack.stop()


def institution_system(network: Stack, institution: str, producer) -> InstitutionSystem:
    """An institution's own system: signs with its key, and seals its reports to intake's
    keys, fetched from intake's public endpoint as any institution would."""
    return InstitutionSystem(institution, network.state.institution_key(institution), producer,
                             intake_keys=fetch_intake_keys(network.url("intake")))


def _token(network: Stack, username: str) -> str:
    secret = json.loads(network.state.passwords_file.read_text())[username]
    answer = httpx.post(network.url("identity") + "/token",
                        data={"grant_type": "password", "username": username, "password": secret})
    answer.raise_for_status()
    return answer.json()["access_token"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium on a phone's screen, one per test module (tests/e2e/browser.py). The
    modules using it carry `browser.needs_chromium`, which skips them without Chromium; under
    CI it does not, and this fixture fails them instead."""
    from tests.e2e.browser import start_chromium  # selenium: only for the browser tests

    driver = start_chromium(tmp_path_factory.mktemp("chromium"))
    try:
        yield driver
    finally:
        driver.quit()


# --- what left the network towards people and institutions' systems ---------------------

def people_messages(network: Stack, receiver: WebhookReceiver | None = None) -> list[tuple[str, str]]:
    """(channel, full text) of every e-mail (headers and body), SMS and webhook body sent."""
    found: list[tuple[str, str]] = []
    for mail in mailbox_messages(network.state.maildir):
        headers = "\n".join(f"{name}: {value}" for name, value in mail.items())
        found.append(("email", f"{headers}\n\n{mail.get_content()}"))
    sms_file: Path = network.state.sms_file
    if sms_file.exists():
        found += [("sms", line) for line in sms_file.read_text(encoding="utf-8").splitlines()]
    if receiver is not None:
        found += [("webhook", hook.body.decode() + json.dumps(hook.headers)) for hook in receiver.seen]
    return found


def assert_nothing_identifies_a_child(messages: list[tuple[str, str]]) -> None:
    """The leak scan's rule (tests/e2e/leak_scan.py: a valid CNP standing alone, not inside
    a hex id or trace id; a synthetic name, address or description) on what people got."""
    found = [leak for channel, text in messages for leak in leak_scan.leaks(channel, text)]
    assert not found, found[0]


async def sign_in(network: Stack, username: str) -> str:
    """A token from the embedded issuer, the way a person (password) or an institution's
    system (client credentials, `sys.<institution>`) signs in."""
    secret = json.loads(network.state.passwords_file.read_text())[username]
    form = ({"grant_type": "client_credentials", "client_id": username, "client_secret": secret}
            if username.startswith("sys.") else
            {"grant_type": "password", "username": username, "password": secret})
    async with httpx.AsyncClient(base_url=network.url("identity")) as client:
        answer = await client.post("/token", data=form)
    answer.raise_for_status()
    return answer.json()["access_token"]


async def wait_until(check: Callable[[], object], timeout: float = 60, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met after {timeout}s: {check.__doc__}")
        await asyncio.sleep(every)




async def dead_letters(network: Stack, token: str | None = None) -> list[dict]:
    """The dead letters in the audit trail, as an auditor finds them."""
    token = token or await sign_in(network, "auditor")
    async with httpx.AsyncClient(base_url=network.url("audit")) as client:
        found = await client.get("/entries", params={"event_type": EventType.DEAD_LETTER_V2.value, "limit": 500},
                                 headers={"Authorization": f"Bearer {token}"})
    return found.json()["entries"]


class Deliveries:
    """What institutions receive on their delivery topics, as their systems would read it."""

    def __init__(self, bootstrap: str) -> None:
        self.events: list[tuple[str, CloudEvent]] = []
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                          auto_offset_reset="earliest", metadata_max_age_ms=1000,
                                          **client_options())
        self._consumer.subscribe(pattern=r"^punte\.delivery\..+")
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._consumer.start()

        async def run() -> None:
            async for record in self._consumer:
                self.events.append((record.topic.removeprefix("punte.delivery."),
                                    decode(record.headers, record.value)))
        self._task = asyncio.create_task(run())

    async def stop(self) -> None:
        assert self._task
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    def outcome_of(self, event_id: str) -> list[tuple[str, dict]]:
        return [(who, e.data) for who, e in self.events
                if e.type == EventType.OUTCOME.value and e.data["subject_id"] == event_id]

    def notifications(self, kind: str | None = None) -> list[tuple[str, dict]]:
        return [(who, e.data) for who, e in self.events if e.type == EventType.CASE_NOTIFICATION.value
                and (kind is None or e.data["kind"] == kind)]
