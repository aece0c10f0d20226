"""Alembic for every service: one env.py body, and the runtime's own tables: outbox and
inbox (each service's first migration), data keys, erasures and sealed dead-letter bodies
(a later migration of each service that seals or erases: ``create_retention_tables``), and
the outbox's parking columns and dead-letter index (``add_outbox_parking``,
``index_outbox_dead_letters``)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

# Alembic is imported where it is used, never at this module's import: a running service
# imports this module (its constants, its table helpers) but runs Alembic in a child process
# (``main`` below), so Alembic and Mako never stay in its memory.


def create_runtime_tables(op) -> None:  # op: alembic.op
    op.create_table(
        "punte_outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=True),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_punte_outbox_pending", "punte_outbox", ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "punte_inbox",
        sa.Column("message_key", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("event_type", sa.Text, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def create_data_keys_table(op) -> None:  # op: alembic.op
    """runtime.data_keys: one wrapped data key per scope; erasure empties it and says when.
    Idempotent, like the two below: two changes of one service, each needing the table,
    may each call it in their own migration."""
    op.create_table(
        "punte_data_keys",
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("kek_id", sa.Text, nullable=True),
        sa.Column("wrapped", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("erased_rule", sa.Text, nullable=True),
        if_not_exists=True,
    )


def create_erasures_table(op) -> None:  # op: alembic.op
    """runtime.retention: the purge job's durable timers, one per scope."""
    op.create_table(
        "punte_erasures",
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        if_not_exists=True,
    )
    op.create_index("ix_punte_erasures_due", "punte_erasures", ["due_at"],
                    postgresql_where=sa.text("done_at IS NULL"), if_not_exists=True)


def create_dead_letters_table(op) -> None:  # op: alembic.op
    """runtime.dead_letters: the body of each message the service dead-lettered, sealed
    under a data key of its own (punte_data_keys), until the dead-letter-body rule erases it."""
    op.create_table(
        "punte_dead_letters",
        sa.Column("scope", sa.Text, primary_key=True),  # dead-letter:<topic>/<partition>/<offset>
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("value_sha256", sa.Text, nullable=False),
        sa.Column("reason_code", sa.Text, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),  # key, headers and value, sealed
        sa.Column("dead_lettered_at", sa.DateTime(timezone=True), nullable=False),
        if_not_exists=True,
    )
    op.create_index("ix_punte_dead_letters_age", "punte_dead_letters", ["dead_lettered_at"],
                    if_not_exists=True)


def create_retention_tables(op) -> None:  # op: alembic.op
    """What a service's purge job needs: data keys, erasures, sealed dead-letter bodies."""
    create_data_keys_table(op)
    create_erasures_table(op)
    create_dead_letters_table(op)


def create_case_restrictions_table(op) -> None:  # op: alembic.op
    """runtime.restrictions: the latest restriction decision about each case a service follows."""
    op.create_table(
        "case_restrictions",
        sa.Column("case_id", sa.Text, primary_key=True),
        sa.Column("restricted", sa.Boolean, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.Text, nullable=False),
    )


def add_outbox_parking(op) -> None:  # op: alembic.op
    """runtime.outbox: a row the relay cannot publish for a reason retrying will not fix is
    parked with that reason (decision 0021); an operator retries it (parking cleared) or
    discards it (kept, marked, never published). Idempotent, like the tables above."""
    op.add_column("punte_outbox", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True),
                  if_not_exists=True)
    op.add_column("punte_outbox", sa.Column("parked_reason", sa.Text, nullable=True), if_not_exists=True)
    op.add_column("punte_outbox", sa.Column("discarded_at", sa.DateTime(timezone=True), nullable=True),
                  if_not_exists=True)
    op.add_column("punte_outbox", sa.Column("discarded_by", sa.Text, nullable=True), if_not_exists=True)
    # The few rows parked now: what the relay's selection and readiness look up on every pass.
    op.create_index("ix_punte_outbox_parked", "punte_outbox", ["topic", "key", "id"],
                    postgresql_where=sa.text("parked_at IS NOT NULL AND published_at IS NULL "
                                             "AND discarded_at IS NULL"), if_not_exists=True)


def index_outbox_dead_letters(op) -> None:  # op: alembic.op
    """/stats counts a service's dead letters from its outbox rows of type
    ro.punte.deadletter.v2 (decision 0021): an index on those few, not a scan of the outbox."""
    op.create_index("ix_punte_outbox_dead_letters", "punte_outbox", ["id"],
                    postgresql_where=sa.text("event_type = 'ro.punte.deadletter.v2'"), if_not_exists=True)


def run_env() -> None:
    """The body of every service's migrations/env.py (online mode, asyncpg)."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")

    def do_run(connection) -> None:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run())


def _config(migrations_dir: Path, url: str):  # -> alembic.config.Config
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(migrations_dir: Path, url: str) -> None:
    """Migrate the database to head. Blocking: run it in a thread from async code."""
    from alembic import command

    command.upgrade(_config(migrations_dir, url), "head")


async def revisions(migrations_dir: Path, url: str) -> tuple[set[str], set[str]]:
    """The revisions the database is at (none: never migrated) and the migrations' heads.
    Reads only: for a service that does not migrate at start (PUNTE_MIGRATE_ON_START)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(_config(migrations_dir, url)).get_heads())
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_heads())
    finally:
        await engine.dispose()
    return set(current), heads


# --- run apart from the service --------------------------------------------------------------
# A service migrates (or checks the schema) once, at start. Alembic and Mako are then about
# 7 MB of every service's resident memory for the rest of its life (issue #14: every
# service ≤ 150 MB), so the service runs them in a child process (runtime.service.migrate's
# ``isolated``). The database URL travels in the environment, never on the command line.
URL_VARIABLE = "PUNTE_MIGRATION_URL"
UNREACHABLE_EXIT = 75  # EX_TEMPFAIL: the database is not reachable now; the parent waits for it


def main(argv: list[str] | None = None) -> int:
    """``python -m runtime.migrations upgrade|revisions DIR``: ``upgrade`` migrates to head;
    ``revisions`` prints ``{"current": [...], "heads": [...]}``. A failure is one line on
    standard error (the exception's type and first line), exit 75 when the database is not
    reachable, else 1."""
    import json
    import os
    import sys

    from runtime.db import unreachable

    command_name, migrations_dir = (argv if argv is not None else sys.argv[1:])[:2]
    url = os.environ[URL_VARIABLE]
    try:
        if command_name == "upgrade":
            upgrade(Path(migrations_dir), url)
        else:
            current, heads = asyncio.run(revisions(Path(migrations_dir), url))
            print(json.dumps({"current": sorted(current), "heads": sorted(heads)}))
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0][:300]
        print(f"{type(exc).__name__}: {first}", file=sys.stderr)
        return UNREACHABLE_EXIT if unreachable(exc) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
