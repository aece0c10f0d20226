"""The bodies of dead-lettered messages, kept by the service that dead-lettered them and
nowhere else (issue #11): the dead letter on punte.deadletter says where the message was,
its digest and why; the message itself (key, headers, value) is sealed here under a data
key of its own, scope ``dead-letter:<topic>/<partition>/<offset>``, so an operator can
replay it until the dead-letter-body rule erases it (the key destroyed, the row deleted).

An operator lists them (``listing``) and replays one through the consumer that failed it
(runtime.inbox.InboxConsumer.replay, decision 0022): the replay is recorded in the inbox
under the dead letter's ``replay_key``, which makes a second replay a duplicate and says
when it was replayed."""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.reference import RetentionSchedule
from runtime.data_keys import DataKeys, data_keys_table
from runtime.log import get_logger

log = get_logger("runtime.dead_letters")

RULE = "dead-letter-body"
SCOPE_PREFIX = "dead-letter:"
# What is sealed is bound to the table it lives in (associated data, with the scope).
CONTEXT = b"punte_dead_letters"

dead_letters_table = sa.table(
    "punte_dead_letters",
    sa.column("scope", sa.Text), sa.column("topic", sa.Text), sa.column("partition", sa.Integer),
    sa.column("offset", sa.BigInteger), sa.column("value_sha256", sa.Text), sa.column("reason_code", sa.Text),
    sa.column("sealed", sa.LargeBinary), sa.column("dead_lettered_at", sa.DateTime(timezone=True)),
)
# The inbox (runtime.inbox), where a replay is recorded under the dead letter's replay key.
REPLAY_PREFIX = "replayed|"
replays = sa.table("punte_inbox", sa.column("message_key", sa.Text),
                   sa.column("received_at", sa.DateTime(timezone=True)))


def scope_of(position: str) -> str:
    """The data key scope of the message at ``position`` (topic/partition/offset)."""
    return SCOPE_PREFIX + position


def digest(value: bytes | None) -> str:
    """SHA-256 of a message's value, hex (no value: the digest of no bytes)."""
    return hashlib.sha256(value or b"").hexdigest()


@dataclass(frozen=True)
class Body:
    """A dead-lettered message whole, as a replay needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    value: bytes | None
    reason_code: str
    failed_at: datetime
    group: str | None = None  # the consumer group that failed it (bodies kept before 0022 name none)

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    def plaintext(self) -> bytes:
        def b64(data: bytes | None) -> str | None:
            return None if data is None else base64.b64encode(data).decode()
        return json.dumps({"key": b64(self.key), "value": b64(self.value), "group": self.group,
                           "headers": [[name, b64(value)] for name, value in self.headers]}).encode()


async def keep(session: AsyncSession, data_keys: DataKeys, bodies: list[Body]) -> None:
    """Seal and store ``bodies`` (in the caller's transaction, with their dead letters). A
    position kept already (a batch retried) or whose scope was erased keeps what it has."""
    if not bodies:
        return
    scopes = {scope_of(b.position): b for b in bodies}
    keys = await data_keys.keys_unless_erased(session, scopes, max(b.failed_at for b in bodies))
    wanted = {s: b for s, b in scopes.items() if s in keys}
    if not wanted:
        return
    await session.execute(pg_insert(dead_letters_table).values([{
        "scope": scope, "topic": body.topic, "partition": body.partition, "offset": body.offset,
        "value_sha256": digest(body.value), "reason_code": body.reason_code,
        "sealed": DataKeys.seal_with(keys[scope], scope, body.plaintext(), CONTEXT),
        "dead_lettered_at": body.failed_at,
    } for scope, body in wanted.items()]).on_conflict_do_nothing(index_elements=["scope"]))


def replay_key(position: str) -> str:
    """The inbox key a replay of the dead letter at ``position`` is recorded under."""
    return REPLAY_PREFIX + scope_of(position)


async def open_body(session: AsyncSession, data_keys: DataKeys, position: str, lock: bool = False) -> Body:
    """The dead-lettered message at ``position``, opened (for a replay); ``Erased`` once its
    rule erased it, LookupError if this service never kept it. ``lock``: its row stays
    locked to the end of the transaction (two replays of one dead letter take turns)."""
    scope = scope_of(position)
    query = sa.select(dead_letters_table).where(dead_letters_table.c.scope == scope)
    row = (await session.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        erased = await data_keys.erased(session, [scope])
        if erased:
            await data_keys.existing(session, [scope])  # raises Erased, saying when and by which rule
        raise LookupError(f"no dead letter kept at {position}")
    data = json.loads(await data_keys.open(session, scope, row.sealed, CONTEXT))

    def unb64(text: str | None) -> bytes | None:
        return None if text is None else base64.b64decode(text)
    return Body(row.topic, row.partition, row.offset, unb64(data["key"]),
                tuple((name, unb64(value) or b"") for name, value in data["headers"]), unb64(data["value"]),
                row.reason_code, row.dead_lettered_at, data.get("group"))


async def claim(session: AsyncSession, data_keys: DataKeys, position: str) -> Body:
    """``open_body``, locked for a replay."""
    return await open_body(session, data_keys, position, lock=True)


async def listing(session: AsyncSession, limit: int = 200) -> list[dict]:
    """The dead letters this service kept a body of, newest first: where, the digest, why,
    when, whether the body is still kept (an erased one: when and by which rule) and when
    it was replayed. Never the body."""
    kept = dead_letters_table
    replayed = replays.alias("replayed")
    rows = (await session.execute(
        sa.select(kept.c.scope, kept.c.value_sha256, kept.c.reason_code, kept.c.dead_lettered_at,
                  replayed.c.received_at.label("replayed_at"))
        .outerjoin(replayed, replayed.c.message_key == REPLAY_PREFIX + kept.c.scope)
        .order_by(kept.c.dead_lettered_at.desc()).limit(limit))).all()
    erased = (await session.execute(
        sa.select(data_keys_table.c.scope, data_keys_table.c.erased_at, data_keys_table.c.erased_rule,
                  replayed.c.received_at.label("replayed_at"))
        .outerjoin(replayed, replayed.c.message_key == REPLAY_PREFIX + data_keys_table.c.scope)
        .where(data_keys_table.c.scope.startswith(SCOPE_PREFIX), data_keys_table.c.erased_at.is_not(None))
        .order_by(data_keys_table.c.erased_at.desc()).limit(limit))).all()

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None
    found = [{"position": r.scope.removeprefix(SCOPE_PREFIX), "value_sha256": r.value_sha256,
              "reason_code": r.reason_code, "dead_lettered_at": when(r.dead_lettered_at), "body_kept": True,
              "erased_at": None, "erased_rule": None, "replayed_at": when(r.replayed_at)} for r in rows]
    found += [{"position": r.scope.removeprefix(SCOPE_PREFIX), "value_sha256": None, "reason_code": None,
               "dead_lettered_at": None, "body_kept": False, "erased_at": when(r.erased_at),
               "erased_rule": r.erased_rule, "replayed_at": when(r.replayed_at)} for r in erased]
    return found[:limit]


async def replayable(session: AsyncSession, limit: int = 200) -> list[str]:
    """Positions of the kept dead letters of failures (not refusals) not yet replayed, oldest first."""
    kept = dead_letters_table
    scopes = (await session.execute(
        sa.select(kept.c.scope)
        .where(kept.c.reason_code == "PROCESSING_FAILED",
               ~sa.exists().where(replays.c.message_key == REPLAY_PREFIX + kept.c.scope))
        .order_by(kept.c.dead_lettered_at, kept.c.scope).limit(limit))).scalars()
    return [scope.removeprefix(SCOPE_PREFIX) for scope in scopes]


async def erase_expired(session: AsyncSession, data_keys: DataKeys, schedule: RetentionSchedule,
                        now: datetime, limit: int = 500) -> int:
    """Bodies older than the dead-letter-body rule: their keys destroyed and rows deleted."""
    before = now - timedelta(days=schedule.rule(RULE).days)
    scopes = list((await session.execute(
        sa.select(dead_letters_table.c.scope).where(dead_letters_table.c.dead_lettered_at <= before)
        .order_by(dead_letters_table.c.dead_lettered_at).limit(limit)
        .with_for_update(skip_locked=True))).scalars())
    if not scopes:
        return 0
    await data_keys.erase(session, scopes, RULE, now)
    await session.execute(sa.delete(dead_letters_table).where(dead_letters_table.c.scope.in_(scopes)))
    return len(scopes)
