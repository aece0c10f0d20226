"""Building blocks for integration tests: a migrated service database, signed messages,
what a service wrote to its outbox, the intake and referral services on a real database,
and a service's HTTP API over ASGI with real tokens."""
from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from fastapi import APIRouter, FastAPI
from prometheus_client.parser import text_string_to_metric_families

from contracts import reference
from contracts.reference import delivery_topic
from runtime import data_keys
from runtime.cloudevents import CloudEvent
from runtime.data_keys import DataKeys
from runtime.db import make_engine, make_sessions
from runtime.inbox import InboxConsumer, Message, key_by_event_id
from runtime.ingress import Window, key_by_sender
from runtime.kafka import client_options
from runtime.outbox import OutboxRelay, outbox_table
from runtime.sealing import ConfiguredKeyProvider
from runtime.service import Runtime, migrate
from runtime.settings import Settings
from runtime.signing import Keyring, PublicKey, SigningKey, network_keyring
from runtime.tokens import TokenIssuer, TokenVerifier
from services.intake import handlers as intake_handlers
from services.intake.adapters.report_keys import ReportKeys
from services.intake.adapters.vault import IdentityVault
from services.intake.bootstrap import build_rules
from services.notification.channels.email import SmtpSender
from services.notification.channels.people import PeopleChannels
from services.notification.channels.sms import FileSmsProvider
from services.notification.domain.retry import RetryPolicy
from services.referral import handlers as referral_handlers

ROOT = Path(__file__).resolve().parents[2]
INTAKE_MIGRATIONS = ROOT / "services" / "intake" / "migrations"
REFERRAL_MIGRATIONS = ROOT / "services" / "referral" / "migrations"
NOTIFICATION_MIGRATIONS = ROOT / "services" / "notification" / "migrations"
# Test keys are valid from this day on (key rotation tests set their own periods).
KEYS_SINCE = datetime(2026, 1, 1, tzinfo=timezone.utc)
T0 = datetime.now(timezone.utc).replace(microsecond=0)
# Distinct offsets for messages of one test run (messages without ids are keyed by position).
positions = itertools.count()
# The network's key in tests: what the services sign their own topics with, and what
# their consumers of those topics verify.
NETWORK_KEY = SigningKey.generate("punte-network-test")
# Intake's keys in tests: synthetic, never a built-in default (intake refuses to start without).
TEST_PSEUDONYM_KEY = "5a" * 32
TEST_IDENTITY_VAULT = IdentityVault({"test-1": bytes(range(32))}, "test-1")
# Intake's encryption key in tests (report v3): synthetic, published in docs/contracts.md
# with the test vector sealed to it.
TEST_REPORT_KEYS_FILE = ROOT / "contracts" / "test-vectors" / "sealing" / "intake-test-key.jwks"
TEST_REPORT_KEYS = ReportKeys.load(TEST_REPORT_KEYS_FILE)
# A service's data keys in tests (PUNTE_DATA_KEYS): one synthetic key-encryption key.
TEST_DATA_KEYS_SETTING = "dk-test:" + "11" * 32
TEST_DATA_KEYS = DataKeys(ConfiguredKeyProvider.from_setting(TEST_DATA_KEYS_SETTING))


class Statements:
    """The statements sent to PostgreSQL through ``engine`` while the block runs, each on one
    line: what a batch-first handler is held to (a constant number of statements a batch)."""

    def __init__(self, engine) -> None:
        self._engine = getattr(engine, "sync_engine", engine)
        self.sent: list[str] = []

    def _note(self, conn, cursor, statement, *args) -> None:
        self.sent.append(" ".join(statement.split()))

    def __enter__(self) -> "Statements":
        sa.event.listen(self._engine, "before_cursor_execute", self._note)
        return self

    def __exit__(self, *exc) -> None:
        sa.event.remove(self._engine, "before_cursor_execute", self._note)

    def kinds(self) -> list[str]:
        """Each statement's first word (SELECT, INSERT, ...)."""
        return [s.split()[0].upper() for s in self.sent]

    def starting(self, *words: str) -> list[str]:
        """The statements that begin with ``words`` (in any case)."""
        prefix = " ".join(words).upper()
        return [s for s in self.sent if s.upper().startswith(prefix)]


def zero_day_schedule(folder: Path) -> reference.RetentionSchedule:
    """The retention schedule with every period 0 days (what PUNTE_RETENTION_FILE gives a
    test): whatever a rule names is due at once."""
    path = folder / "retention-0-days.yaml"
    text = reference.RETENTION_FILE.read_text()
    path.write_text("\n".join(("    days: 0" if line.startswith("    days:") else line)
                              for line in text.splitlines()))
    return reference.retention(path)


async def migrated_database(server_url: str, service: str, migrations: Path):
    """A fresh database for ``service`` on the test server, at head; (engine, sessions)."""
    name = f"{service}_{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=server_url)
    url = await migrate(settings, name, migrations)
    engine = make_engine(url, pool_size=5)
    return engine, make_sessions(engine)


def message(topic: str, event: CloudEvent | None = None, *, value: bytes | None = None,
            headers: list[tuple[str, bytes]] | None = None, offset: int = 0,
            partition: int = 0) -> Message:
    """A message as the consumer would hand it over, built from an event or raw parts."""
    if event is not None:
        value, headers = event.body(), event.headers()
    return Message(topic, partition, offset, None, value, tuple(headers or ()), 0)


def keyring_of(keys: dict[str, SigningKey], since: datetime = KEYS_SINCE) -> Keyring:
    """The public keyring of institutions signing with ``keys`` (institution id -> key)."""
    return Keyring([PublicKey(key.key_id, institution, key.public_raw(), since, None)
                    for institution, key in keys.items()])


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 20) -> list[Any]:
    """Read ``count`` records from the start of ``topic`` (all partitions)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, **client_options())
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return records


async def emitted(engine) -> list[tuple[str, dict, dict]]:
    """Every event a service wrote to its outbox: (topic, headers, data)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox_table).order_by(outbox_table.c.id))).all()
    return [(r.topic, dict(r.headers), json.loads(r.payload)) for r in rows]


def on_topic(out: Iterable[tuple[str, dict, dict]], topic: str) -> list[dict]:
    """The data of the emitted events (see ``emitted``) written to ``topic``."""
    return [d for t, h, d in out if t == topic]


def delivered(out: Iterable[tuple[str, dict, dict]], institution: str) -> list[dict]:
    """What the network told ``institution`` on its delivery topic (outcomes, notices)."""
    return on_topic(out, delivery_topic(institution))


def of_type(out: Iterable[tuple[str, dict, dict]], type_: str) -> list[dict]:
    """The data of the emitted events of one CloudEvents type."""
    return [d for t, h, d in out if h.get("ce_type") == type_]


# --- intake ------------------------------------------------------------------------------

async def intake_consumer(server_url: str, keyring: Keyring, window: Window | None = None,
                          vault: IdentityVault | None = None, report_keys: ReportKeys | None = None,
                          accept_clear: bool = True, signer: SigningKey | None = None):
    """Intake's real handler on a fresh migrated database; (consumer, engine, intake).
    ``signer``: the network key its outbox signs with (none: unsigned, as most tests read
    the outbox table rather than a topic)."""
    engine, sessions = await migrated_database(server_url, "intake", INTAKE_MIGRATIONS)
    intake = intake_handlers.Intake(keyring, build_rules(TEST_PSEUDONYM_KEY), vault or TEST_IDENTITY_VAULT,
                                    window or Window(), report_keys=report_keys or TEST_REPORT_KEYS,
                                    accept_clear=accept_clear)

    async def handle(uow, msg):
        await intake_handlers.submit_report(uow, msg, intake)

    async def handle_many(uow, msgs):  # as services/intake/bootstrap.py
        await intake_handlers.submit_reports(uow, msgs, intake)

    async def on_failure(uow, msg, code, detail):  # as services/intake/bootstrap.py
        await intake_handlers.record_failure(uow, msg, code)

    consumer = InboxConsumer(service="intake", group_id="t", bootstrap="t", sessions=sessions,
                             handler=handle, message_key=key_by_sender, attempts=1,
                             data_keys=TEST_DATA_KEYS, on_failure=on_failure, batch_handler=handle_many,
                             signer=signer)
    return consumer, engine, intake


# --- referral ----------------------------------------------------------------------------

def referral_config(keyring: Keyring | None = None) -> referral_handlers.Config:
    """Referral's configuration with the contract's deadlines, outcomes and reasons, sealing
    notes under TEST_DATA_KEYS_SETTING."""
    return referral_handlers.Config(keyring or Keyring([]), reference.referral_deadlines(),
                                    frozenset(reference.referral_outcomes()),
                                    data_keys.from_settings(Settings(data_keys=TEST_DATA_KEYS_SETTING)))


def case_opened(case_id: str = "case-1", urgency: str = "P1", lead: str = "dgaspc-bc") -> CloudEvent:
    """Intake's case.opened for a synthetic child, reported by the school, signed by the
    network as intake's outbox signs it."""
    return NETWORK_KEY.sign(CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake", {
        "case_id": case_id, "child_ref": "ch-x", "uat_siruta": 21891, "categories": ["neglect"],
        "urgency": urgency, "lead": lead, "informed": ["spas-colonesti"], "report_id": "r-1",
        "reporter": {"institution": "isj-bc", "role": "school-counsellor"},
        "received_at": T0.isoformat(), "do_not_contact": True,
    }, subject=case_id))


def case_closed(case_id: str, closed_at: datetime, closed_by: str = "dgaspc-bc",
                report_ids: list[str] | None = None) -> CloudEvent:
    """Referral's case.closed, signed by the network as referral's outbox signs it."""
    return NETWORK_KEY.sign(CloudEvent.new("ro.punte.case.closed.v1", "/punte/referral", {
        "case_id": case_id, "closed_at": closed_at.isoformat(), "closed_by": closed_by,
        "reason": "goals-met", "report_ids": report_ids or []}, subject=case_id))


def case_reopened(case_id: str, reopened_at: datetime, reopened_by: str = "dgaspc-bc") -> CloudEvent:
    return NETWORK_KEY.sign(CloudEvent.new("ro.punte.case.reopened.v1", "/punte/referral", {
        "case_id": case_id, "reopened_at": reopened_at.isoformat(), "reopened_by": reopened_by}, subject=case_id))


async def referral_consumers(server_url: str, config: referral_handlers.Config):
    """Referral's real handlers on a fresh migrated database with the service directory
    seeded; ({"cases": consumer, "commands": consumer}, engine)."""
    engine, sessions = await migrated_database(server_url, "referral", REFERRAL_MIGRATIONS)
    async with sessions() as session, session.begin():
        await referral_handlers.seed_directory(session, T0)

    async def on_case(uow, msg):
        await referral_handlers.follow_case(uow, msg, config)

    async def on_cases(uow, msgs):  # as services/referral/bootstrap.py: a batch at once
        await referral_handlers.follow_cases(uow, msgs, config)

    async def on_command(uow, msg):
        await referral_handlers.on_ingress(uow, msg, config)

    async def on_command_failure(uow, msg, code, detail):  # as services/referral/bootstrap.py
        await referral_handlers.record_failure(uow, msg, code)

    consumers = {name: InboxConsumer(service="referral", group_id="t", bootstrap="t", sessions=sessions,
                                     handler=handler, attempts=1, network_keys=network_keyring(NETWORK_KEY),
                                     data_keys=TEST_DATA_KEYS, on_failure=on_failure,
                                     message_key=key_by_sender if name == "commands" else key_by_event_id,
                                     batch_handler=on_cases if name == "cases" else None)
                 for name, handler, on_failure in (("cases", on_case, None),
                                                   ("commands", on_command, on_command_failure))}
    return consumers, engine


# --- waiting ------------------------------------------------------------------------------

async def eventually(check: Callable[[], Awaitable[object] | object], timeout: float = 60) -> object:
    """``check``'s first true answer (a condition to reach, not a timing to assert); ``check``
    may be a coroutine function or a plain one (a condition on state in hand)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout}s: {check.__doc__}")
        await asyncio.sleep(0.2)


async def cancelled(task: asyncio.Task) -> None:
    """Cancel a consumer's (or any loop's) task and wait until it has stopped."""
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


# --- HTTP --------------------------------------------------------------------------------

async def scraped(client: httpx.AsyncClient, name: str, **labels: str) -> float | None:
    """One sample of a service's Prometheus exposition (GET /metrics, no token, as a scraper
    reads it); None when it has no such sample."""
    answer = await client.get("/metrics")
    assert answer.status_code == 200, answer.text
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None

ISSUER = TokenIssuer("http://issuer.test", SigningKey.generate("idp-1"))


def bearer(institution: str, person: str, *roles: str) -> dict[str, str]:
    """The Authorization header of a person of ``institution`` (a case manager by default)."""
    token = ISSUER.issue(person, institution, list(roles) or ["case-manager"])
    return {"Authorization": f"Bearer {token}"}


def service_app(name: str, engine, *routers: APIRouter, keyring: Keyring | None = None,
                settings: Settings | None = None) -> FastAPI:
    """A service's HTTP API on its database, trusting ISSUER's tokens; without a broker (its
    outbox rows stay in the database, see ``emitted``)."""
    app = FastAPI()
    for router in routers:
        app.include_router(router)
    app.state.runtime = Runtime(
        name=name, settings=settings or Settings(data_keys=TEST_DATA_KEYS_SETTING), engine=engine, sessions=make_sessions(engine),
        producer=None, relay=OutboxRelay(engine, None),  # type: ignore[arg-type]
        verifier=TokenVerifier(ISSUER.issuer, ISSUER.audience, ISSUER.jwks()),
        network_key=None, keyring=keyring or Keyring([]))
    return app


def api_client(name: str, router: APIRouter, engine, keyring: Keyring | None = None) -> httpx.AsyncClient:
    """``service_app`` over ASGI."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(service_app(name, engine, router, keyring=keyring)),
                             base_url=f"http://{name}.test")


@asynccontextmanager
async def referral_api(server_url: str, router: APIRouter) -> AsyncIterator[httpx.AsyncClient]:
    """Referral's HTTP API (``router``) on a fresh database whose consumers took one case,
    ``case_opened()``; the client carries the engine (``client.engine``) for direct reads."""
    consumers, engine = await referral_consumers(server_url, referral_config())
    await consumers["cases"].process([message("punte.cases", case_opened(), offset=next(positions))])
    client = api_client("referral", router, engine)
    client.engine = engine  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        await client.aclose()
        await engine.dispose()


# --- notification ------------------------------------------------------------------------

def people_channels(smtp_port: int, sms_file: Path) -> PeopleChannels:
    """E-mail to a test SMTP server, SMS to a file, retried quickly: the people channels of
    the notification tests."""
    return PeopleChannels(
        email=SmtpSender("127.0.0.1", smtp_port, "punte@example.invalid", starttls=False),
        sms=FileSmsProvider(sms_file), inbox_url="http://127.0.0.1:8003/ui",
        zone=ZoneInfo("Europe/Bucharest"), policy=RetryPolicy(base=1, cap=5, max_attempts=3, timeout=10))


# --- audit -------------------------------------------------------------------------------

# The audit's data keys in tests (synthetic): a service built by hand must be given some.
AUDIT_DATA_KEYS = "dk-1:" + "11" * 32


def audit_trail(retention_file: Path | None = None):
    """What the audit's append needs (services.audit.handlers.Trail), as bootstrap builds it:
    data keys, the network's keys, the retention schedule (``retention_file``: a test's)."""
    from runtime.data_keys import from_settings
    from services.audit import handlers as audit_handlers
    from services.audit.bootstrap import institution_topics

    return audit_handlers.Trail(
        templates=institution_topics(), data_keys=from_settings(Settings(data_keys=AUDIT_DATA_KEYS)),
        network_keys=network_keyring(NETWORK_KEY), schedule=reference.retention(retention_file))


def audit_consumer(sessions, trail, message_key: Callable[[Message], str] | None = None,
                   batched: bool = True) -> InboxConsumer:
    """The audit trail's consumer as the service runs it (one attempt a message), driven
    through ``process``: ``message_key`` the inbox key (the record itself unless given);
    not ``batched``, every message in a savepoint of its own (the path after a failed batch)."""
    from functools import partial

    from services.audit import handlers as audit_handlers

    return InboxConsumer(service="audit", group_id="t", bootstrap="t", sessions=sessions,
                         handler=partial(audit_handlers.append, trail=trail),
                         message_key=message_key or audit_handlers.key_by_record, attempts=1,
                         batch_handler=partial(audit_handlers.append_many, trail=trail) if batched else None)
