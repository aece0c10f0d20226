"""Limits of each service's HTTP API, on the real database and broker: body caps
(413 TOO_LARGE), rates per person, per institution and per address (429 RATE_LIMITED with
Retry-After), a cap on open inbox streams that frees a slot when a client goes away, and
the gateway's wait for an outcome woken by PostgreSQL NOTIFY instead of polling."""
from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from punte.accounts import new_account
from punte.identity import create_app as identity_app
from runtime.cloudevents import CloudEvent
from runtime.db import make_sessions
from runtime.inbox import Message
from runtime.kafka import make_producer
from runtime.outbox import OutboxRelay
from runtime.service import Runtime, create_app
from runtime.settings import Settings
from runtime.signing import SigningKey
from runtime.tokens import TokenVerifier
from runtime.web_pages import IDENTITY_CLIENT
from services.notification.entrypoints import ui
from tests.integration.helpers import ISSUER, bearer, intake_consumer, keyring_of, migrated_database

ROOT = Path(__file__).resolve().parents[2]
KEY = SigningKey.generate("isj-bc-1")
KEYRING = keyring_of({"isj-bc": KEY})
SCHOOL = bearer("isj-bc", "cm.isj-bc")


def service(name: str, engine, settings: Settings, producer=None) -> tuple[FastAPI, httpx.AsyncClient]:
    """The service's app as ``python -m services.<name>`` builds it (middleware and all), on
    a test database, trusting the test issuer's tokens."""
    app = create_app(importlib.import_module(f"services.{name}.bootstrap").SPEC, settings)
    app.state.runtime = Runtime(
        name=name, settings=settings, engine=engine, sessions=make_sessions(engine), producer=producer,
        relay=OutboxRelay(engine, None),  # type: ignore[arg-type]
        verifier=TokenVerifier(ISSUER.issuer, ISSUER.audience, ISSUER.jwks()),
        network_key=None, keyring=KEYRING)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return app, httpx.AsyncClient(transport=transport, base_url=f"http://{name}.test")


def report(description: str = "Date sintetice.") -> CloudEvent:
    return KEY.sign(CloudEvent.new("ro.punte.report.submitted.v2", "/institutions/isj-bc", {
        "reporter": {"institution": "isj-bc", "role": "school-counsellor"}, "channel": "school",
        "child": {"given_name": "Ilinca", "family_name": "Sintetic", "birth_date": "2015-03-04",
                  "uat_siruta": 21891, "county": "BC"},
        "risks": [{"category": "bullying"}], "description": description,
    }))


def binary(event: CloudEvent) -> dict[str, str]:
    """CloudEvents HTTP binary mode: the attributes as ce- headers."""
    return {**SCHOOL, "Content-Type": "application/json",
            **{k.replace("ce_", "ce-", 1): v.decode() for k, v in event.headers() if k.startswith("ce_")}}


def refused(answer: httpx.Response, status: int, code: str) -> bool:
    return answer.status_code == status and answer.json()["detail"]["code"] == code


@pytest.fixture
async def intake_db(infrastructure):
    engine, _ = await migrated_database(infrastructure.database_url, "intake",
                                        ROOT / "services" / "intake" / "migrations")
    yield engine
    await engine.dispose()


# --- body caps ---------------------------------------------------------------------------


@pytest.mark.broker
async def test_a_2mb_report_is_refused_as_too_large_declared_or_streamed(infrastructure, intake_db):
    producer = make_producer(infrastructure.kafka_bootstrap)
    await producer.start()
    _, client = service("intake", intake_db, Settings(), producer)
    huge = report("x" * 2_000_000)

    async def streamed() -> AsyncIterator[bytes]:
        body = huge.body()
        for start in range(0, len(body), 64 * 1024):
            yield body[start:start + 64 * 1024]

    try:
        declared = await client.post("/v1/events", params={"wait": 0}, content=huge.body(), headers=binary(huge))
        chunked = await client.post("/v1/events", params={"wait": 0}, content=streamed(), headers=binary(huge))
        ordinary = report()
        fits = await client.post("/v1/events", params={"wait": 0}, content=ordinary.body(), headers=binary(ordinary))
    finally:
        await client.aclose()
        await producer.stop()
    assert refused(declared, 413, "TOO_LARGE"), (declared.status_code, declared.text[:300])
    assert "content-length" not in chunked.request.headers
    assert refused(chunked, 413, "TOO_LARGE"), (chunked.status_code, chunked.text[:300])
    assert fits.status_code == 202, "an ordinary report goes through"


# --- rates ---------------------------------------------------------------------------------


async def test_calls_are_limited_per_person_and_per_institution(intake_db):
    settings = Settings(rate_per_principal="3/minute", rate_per_institution="5/minute")
    _, client = service("intake", intake_db, settings)
    ask = {"source": "/institutions/isj-bc", "id": "nu-exista"}
    ana, ion = bearer("isj-bc", "cm.ana"), bearer("isj-bc", "cm.ion")
    async with client:
        by_ana = [await client.get("/v1/events/outcome", params=ask, headers=ana) for _ in range(4)]
        by_ion = [await client.get("/v1/events/outcome", params=ask, headers=ion) for _ in range(3)]
        elsewhere = await client.get("/v1/events/outcome", params={**ask, "source": "/institutions/dsp-bc"},
                                     headers=bearer("dsp-bc", "cm.dsp-bc"))
    assert [a.json()["detail"]["code"] for a in by_ana] == ["NOT_YET", "NOT_YET", "NOT_YET", "RATE_LIMITED"]
    assert by_ana[3].status_code == 429 and int(by_ana[3].headers["Retry-After"]) >= 1
    # Ion's own budget is untouched, but the school as a whole has had its five.
    assert [a.json()["detail"]["code"] for a in by_ion] == ["NOT_YET", "NOT_YET", "RATE_LIMITED"]
    assert by_ion[2].status_code == 429 and "Retry-After" in by_ion[2].headers
    assert elsewhere.json()["detail"]["code"] == "NOT_YET", "another institution is not slowed down"


async def test_sign_in_on_the_pages_is_throttled_per_address(intake_db):
    issuer_url = ISSUER.issuer
    account, password = new_account("cm.ana", "dgaspc-bc", ["case-manager"], "Ana Manager")
    identity = identity_app(ISSUER, {account.username: account})
    app = FastAPI()
    app.include_router(ui.router)
    settings = Settings(oidc_issuer=issuer_url, rate_login_per_address="3/minute")
    app.state.runtime = Runtime(
        name="notification", settings=settings, engine=intake_db, sessions=make_sessions(intake_db),
        producer=None, relay=OutboxRelay(intake_db, None),  # type: ignore[arg-type]
        verifier=TokenVerifier(issuer_url, "punte", ISSUER.jwks()), network_key=None, keyring=KEYRING)
    setattr(app.state, IDENTITY_CLIENT,
            lambda: httpx.AsyncClient(transport=httpx.ASGITransport(identity), base_url=issuer_url))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://notification.test") as page:
        guesses = [await page.post("/ui/login", json={"username": "cm.ana", "password": f"ghicit-{n}"})
                   for n in range(3)]
        over = await page.post("/ui/login", json={"username": "cm.ana", "password": password})
    assert [g.json()["detail"]["code"] for g in guesses] == ["INVALID_CREDENTIALS"] * 3
    assert refused(over, 429, "RATE_LIMITED") and int(over.headers["Retry-After"]) >= 1


# --- inbox streams ---------------------------------------------------------------------------


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """``app`` on a real port in this event loop (streams need a real connection)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_open_inbox_streams_are_capped_and_a_closed_one_frees_its_slot(infrastructure):
    engine, _ = await migrated_database(infrastructure.database_url, "notification",
                                        ROOT / "services" / "notification" / "migrations")
    app, unused = service("notification", engine, Settings(streams_per_institution=1, streams_total=2))
    await unused.aclose()
    dgaspc, police, school = bearer("dgaspc-bc", "cm.a"), bearer("ipj-bc", "cm.b"), bearer("isj-bc", "cm.c")
    try:
        async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:

            async def attempt(headers: dict[str, str]) -> httpx.Response:
                """Open a stream and close it at once: its status, and the body of a refusal."""
                async with client.stream("GET", "/inbox/stream", headers=headers) as answer:
                    if answer.status_code != 200:
                        await answer.aread()
                    return answer

            first = client.stream("GET", "/inbox/stream", headers=dgaspc)
            opened = await first.__aenter__()
            assert opened.status_code == 200
            same_institution = await attempt(bearer("dgaspc-bc", "cm.d"))
            async with client.stream("GET", "/inbox/stream", headers=police) as other:
                assert other.status_code == 200, "another institution has its own slots"
                over_all = await attempt(school)
            await first.__aexit__(None, None, None)  # the first client goes away
            async with asyncio.timeout(15):
                while (again := await attempt(dgaspc)).status_code != 200:
                    await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
    assert refused(same_institution, 429, "RATE_LIMITED") and "Retry-After" in same_institution.headers
    assert refused(over_all, 429, "RATE_LIMITED")
    assert again.status_code == 200


# --- the gateway's wait --------------------------------------------------------------------


class Ingress:
    """Stands in for the broker: keeps what the gateway sends to the ingress topic."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[Message] = asyncio.Queue()
        self.offset = 0

    async def send_and_wait(self, topic: str, value: bytes, key: bytes, headers: list) -> None:
        self.offset += 1
        await self.sent.put(Message(topic, 0, self.offset, key, value, tuple(headers), 0))


async def test_a_waiting_request_is_woken_by_the_recorded_outcome_on_one_listening_connection(infrastructure):
    consumer, engine, _ = await intake_consumer(infrastructure.database_url, KEYRING)
    ingress = Ingress()
    # A re-check so slow that only a notification can answer the requests in time.
    app, client = service("intake", engine, Settings(outcome_recheck_seconds=600), ingress)
    lookups = 0

    def count(conn, cursor, statement: str, *args) -> None:
        nonlocal lookups
        lookups += "FROM reports" in statement and "answer" in statement

    sa.event.listen(engine.sync_engine, "before_cursor_execute", count)

    async def submit_and_answer(event: CloudEvent) -> httpx.Response:
        posted = asyncio.create_task(client.post("/v1/events", params={"wait": 25}, content=event.body(),
                                                 headers=binary(event)))
        sent = await asyncio.wait_for(ingress.sent.get(), 10)
        await asyncio.sleep(0.5)  # the request is waiting
        await consumer.process([sent])  # intake records the outcome
        return await asyncio.wait_for(posted, 20)

    try:
        first = await submit_and_answer(report())
        looked = lookups
        second = await submit_and_answer(report("Încă un raport sintetic."))
        async with engine.connect() as conn:
            listening = await conn.scalar(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'punte-intake-listen'"
                " AND datname = current_database()"))
    finally:
        await client.aclose()
        from runtime.limits import wakeups_of
        await wakeups_of(app.state.runtime).close()  # what the service's lifespan does at shutdown
        await engine.dispose()
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    assert second.status_code == 200 and second.json()["status"] == "accepted"
    # Before sending, on waiting, on being woken: no polling in between.
    assert looked <= 3 and lookups - looked <= 3, (looked, lookups)
    assert listening == 1, "one listening connection, reused by every waiting request"


async def test_an_answer_recorded_without_a_notification_is_found_by_the_re_check(intake_db):
    from runtime.limits import Wakeups
    wakeups = Wakeups(intake_db.url.render_as_string(hide_password=False), "intake")
    recorded: list[dict] = []

    async def look() -> dict | None:
        return recorded[0] if recorded else None

    try:
        waiting = asyncio.create_task(wakeups.wait("punte_outcome", "a-key", look, 20, 0.2))
        await asyncio.sleep(0.5)
        recorded.append({"status": "accepted"})  # and no NOTIFY
        assert await asyncio.wait_for(waiting, 10) == {"status": "accepted"}
    finally:
        await wakeups.close()
