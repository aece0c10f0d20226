"""Who a child is, as each report told it (issue #10): a signed report with a known CNP
adds a version of the child's identity and never overwrites what earlier reports said; the
current identity is the latest version. Identities kept before versions survive the
migration as the first version."""
from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from runtime.cloudevents import CloudEvent
from runtime.db import ensure_database, make_engine, make_sessions
from runtime.service import migrate
from runtime.settings import Settings
from runtime.signing import SigningKey
from services.intake.adapters import repository
from services.intake.adapters.tables import identities
from services.intake.adapters.vault import IdentityVault, Sealed
from tests.integration.helpers import (
    INTAKE_MIGRATIONS,
    emitted,
    intake_consumer,
    keyring_of,
    message,
    positions,
)

KEYS = {i: SigningKey.generate(f"{i}-1") for i in ("isj-bc", "dsp-bc")}
KEYRING = keyring_of(KEYS)
CNP = "5150412041230"


def report(sender: str, given: str, family: str, address: str) -> CloudEvent:
    channel, role = {"isj-bc": ("school", "school-counsellor"), "dsp-bc": ("family-doctor", "family-doctor")}[sender]
    return KEYS[sender].sign(CloudEvent.new("ro.punte.report.submitted.v2", f"/institutions/{sender}", {
        "reporter": {"institution": sender, "role": role}, "channel": channel,
        "child": {"cnp": CNP, "given_name": given, "family_name": family, "address": address,
                  "uat_siruta": 21891, "county": "BC"},
        "risks": [{"category": "school_absenteeism"}], "description": "Date sintetice.",
    }))


def opened(vault: IdentityVault, row) -> dict:
    return vault.open(Sealed(row.key_id, row.nonce, row.ciphertext), row.child_ref)


async def test_a_second_report_adds_a_version_and_leaves_the_first_as_it_was(infrastructure):
    consumer, engine, intake = await intake_consumer(infrastructure.database_url, KEYRING)
    try:
        first = report("isj-bc", "Ana", "Testescu", "str. Exemplului nr. 1")
        await consumer.process([message("punte.ingress.isj-bc", first, offset=next(positions))])
        async with engine.connect() as conn:
            [before] = (await conn.execute(sa.select(identities))).all()
        second = report("dsp-bc", "Anca", "Exemplu", "str. Fictivă nr. 9")
        await consumer.process([message("punte.ingress.dsp-bc", second, offset=next(positions))])
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(identities).order_by(identities.c.version))).all()
        async with make_sessions(engine)() as session:
            current = await repository.current_identity(session, before.child_ref)
        statuses = [d["status"] for t, h, d in await emitted(engine) if h.get("ce_type") == "ro.punte.outcome.v1"]
    finally:
        await engine.dispose()
    assert statuses == ["accepted", "accepted"]
    assert len(rows) == 2 and rows[0].child_ref == rows[1].child_ref == before.child_ref
    assert rows[0] == before, "the first version is not touched"
    assert [(r.report_id, r.reporter) for r in rows] == [(first.id, "isj-bc"), (second.id, "dsp-bc")]
    told = [opened(intake.vault, r) for r in rows]
    assert [(t["given_name"], t["family_name"], t["address"]) for t in told] == [
        ("Ana", "Testescu", "str. Exemplului nr. 1"), ("Anca", "Exemplu", "str. Fictivă nr. 9")]
    assert current is not None and opened(intake.vault, current)["given_name"] == "Anca"


async def test_identities_kept_before_versions_become_their_first_version(infrastructure):
    settings = Settings(database_url=infrastructure.database_url)
    name = f"intake_{uuid.uuid4().hex[:8]}"
    url = settings.database_for(name)
    vault = IdentityVault({"k": bytes(32)}, "k")
    sealed = vault.seal({"cnp": CNP, "given_name": "Ana"}, "ch-before")
    config = Config()
    config.set_main_option("script_location", str(INTAKE_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    await ensure_database(url)
    await asyncio.to_thread(command.upgrade, config, "0002")  # as a database was before versions
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO identities (child_ref, key_id, nonce, ciphertext, updated_at) "
                "VALUES ('ch-before', :key_id, :nonce, :ciphertext, now())"),
                {"key_id": sealed.key_id, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext})
        await migrate(settings, name, INTAKE_MIGRATIONS)
        async with make_sessions(engine)() as session:
            current = await repository.current_identity(session, "ch-before")
    finally:
        await engine.dispose()
    assert current is not None and current.report_id is None
    assert opened(vault, current) == {"cnp": CNP, "given_name": "Ana"}
