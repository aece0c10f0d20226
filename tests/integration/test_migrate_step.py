"""Migrations as their own step (decision 0029): on Kubernetes the migrations Job runs
`punte migrate`, and the services start with PUNTE_MIGRATE_ON_START=false. Such a service
never migrates and never serves on another schema: against a database not at head it stops
its start saying so and what to run; once `punte migrate` brought it to head, it starts."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from punte.cli import app as cli
from punte.embedded import free_port
from runtime.db import connect, ensure_database
from runtime.service import MigrationsFailed, ServiceSpec, _migrations_process, create_app
from runtime.settings import Settings
from tests.integration.helpers import NETWORK_KEY, REFERRAL_MIGRATIONS, ROOT


async def _no_stats(session) -> dict:
    return {}


def referral(prefix: str, infrastructure, tmp_path: Path, **settings: object) -> tuple[ServiceSpec, Settings]:
    NETWORK_KEY.save(tmp_path / "network.key")
    spec = ServiceSpec(name="referral", migrations=REFERRAL_MIGRATIONS, consumers=lambda rt: [], routers=[],
                       stats=_no_stats)
    return spec, Settings(database_url=infrastructure.database_url, database_prefix=prefix,
                          kafka_bootstrap=infrastructure.kafka_bootstrap,
                          network_key_file=tmp_path / "network.key", **settings)


async def _tables(url: str) -> list[str]:
    conn = await connect(url)
    try:
        return [r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")]
    finally:
        await conn.close()


async def test_a_service_that_does_not_migrate_refuses_a_database_not_at_head(infrastructure, tmp_path: Path):
    spec, settings = referral(f"t{uuid.uuid4().hex[:8]}", infrastructure, tmp_path,
                              migrate_on_start=False, startup_timeout_seconds=0.5)
    url = settings.database_for("referral")
    await ensure_database(url)  # as CloudNativePG's Database resource leaves it: there, empty
    app = create_app(spec, settings)
    with pytest.raises(RuntimeError) as refused:
        async with app.router.lifespan_context(app):
            pass
    message = str(refused.value)
    assert "none (never migrated)" in message and "punte migrate referral" in message
    assert await _tables(url) == []  # it created nothing


def test_punte_migrate_brings_the_database_to_head_then_the_service_starts(infrastructure, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PUNTE_DATABASE_URL", infrastructure.database_url)
    monkeypatch.setenv("PUNTE_DATABASE_PREFIX", prefix)
    first = CliRunner().invoke(cli, ["migrate", "referral"])
    assert first.exit_code == 0, first.output
    assert "referral: la zi / at head" in first.output
    again = CliRunner().invoke(cli, ["migrate", "referral"])  # twice: nothing to do, same head
    assert again.exit_code == 0 and again.output == first.output

    spec, settings = referral(prefix, infrastructure, tmp_path, migrate_on_start=False, startup_timeout_seconds=30)

    async def start() -> bool:
        app = create_app(spec, settings)
        async with app.router.lifespan_context(app):
            return app.state.runtime.started

    assert asyncio.run(start())
    assert "punte_outbox" in asyncio.run(_tables(settings.database_for("referral")))


def test_punte_migrate_refuses_an_unknown_service():
    answer = CliRunner().invoke(cli, ["migrate", "referal"])
    assert answer.exit_code == 2 and "referal" in answer.output


async def test_a_starting_service_migrates_in_a_child_process(infrastructure, tmp_path: Path):
    """A service migrates at start in a child process, so Alembic and its templates (Mako)
    never stay in its memory (issue #14): the database is at head all the same, and a
    service process never imports them."""
    spec, settings = referral(f"t{uuid.uuid4().hex[:8]}", infrastructure, tmp_path)
    app = create_app(spec, settings)
    async with app.router.lifespan_context(app):
        pass
    assert "alembic_version" in await _tables(settings.database_for("referral"))
    imported = subprocess.run(
        [sys.executable, "-c", "import sys; import runtime.service, services.intake.bootstrap, "
         "services.referral.bootstrap, services.notification.bootstrap, services.audit.bootstrap; "
         "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako'}))"],
        capture_output=True, text=True, check=True, cwd=ROOT)
    assert imported.stdout.strip() == "[]"


async def test_the_migrations_child_says_why_it_failed(infrastructure, tmp_path: Path):
    """Its failure comes back as one line: a database not reachable now is a ConnectionError,
    which start-up waits out; anything else stops the start with the child's reason."""
    url = Settings(database_url=infrastructure.database_url, database_prefix=f"t{uuid.uuid4().hex[:8]}") \
        .database_for("referral")
    await ensure_database(url)
    with pytest.raises(MigrationsFailed, match="migrations \\(upgrade\\) failed: .*"):
        await _migrations_process("upgrade", tmp_path / "no-migrations-here", url)
    unreachable = make_url(url).set(port=free_port()).render_as_string(hide_password=False)
    with pytest.raises(ConnectionError):
        await _migrations_process("upgrade", REFERRAL_MIGRATIONS, unreachable)
