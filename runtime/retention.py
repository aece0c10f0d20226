"""The purge job's durable timers: erasures scheduled per scope (a case, a report) at the
time their retention rule says, and carried out by a polling loop (the same mechanism as
referral's deadlines: due rows taken with SKIP LOCKED, marked done in the same transaction).

Erasing a scope destroys its data key (runtime.data_keys); a service passes ``on_erase`` to
delete the rows it keeps about that scope as well. Runtime-owned rows (published outbox
rows, processed inbox rows, sealed dead-letter bodies) are pruned by age
(``prune_runtime_rows``, runtime.dead_letters). ``purge`` is one pass of a service's purge
job: all of these, in the caller's transaction."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.reference import RetentionSchedule
from runtime import dead_letters
from runtime.data_keys import DataKeys, data_keys_table
from runtime.db import any_of

erasures_table = sa.table(
    "punte_erasures",
    sa.column("scope", sa.Text), sa.column("rule", sa.Text),
    sa.column("due_at", sa.DateTime(timezone=True)), sa.column("done_at", sa.DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Due:
    scope: str
    rule: str


async def schedule(session: AsyncSession, scopes: Iterable[str], rule: str, due_at: datetime) -> None:
    """Erase ``scopes`` at ``due_at`` by ``rule``. Scheduling a scope again moves its
    erasure (a reopened and re-closed case); one already done stays done."""
    rows = [{"scope": s, "rule": rule, "due_at": due_at} for s in sorted(set(scopes))]
    if rows:
        statement = pg_insert(erasures_table).values(rows)
        await session.execute(statement.on_conflict_do_update(
            index_elements=["scope"], set_={"rule": statement.excluded.rule, "due_at": statement.excluded.due_at},
            where=sa.text("punte_erasures.done_at IS NULL")))


async def cancel(session: AsyncSession, scopes: Iterable[str]) -> None:
    """A scope that must be kept after all (a case reopened): its pending erasure goes."""
    await session.execute(sa.delete(erasures_table).where(
        any_of(erasures_table.c.scope, sorted(set(scopes))), erasures_table.c.done_at.is_(None)))


async def erase_due(session: AsyncSession, data_keys: DataKeys, now: datetime,
                    on_erase: Callable[[AsyncSession, Sequence[Due]], Awaitable[None]] | None = None,
                    limit: int = 100) -> int:
    """Every erasure due by ``now``: its data key destroyed, the service's own rows deleted
    (``on_erase``), marked done, all in the caller's transaction. Returns how many."""
    due = [Due(r.scope, r.rule) for r in (await session.execute(
        sa.select(erasures_table.c.scope, erasures_table.c.rule)
        .where(erasures_table.c.done_at.is_(None), erasures_table.c.due_at <= now)
        .order_by(erasures_table.c.due_at).limit(limit).with_for_update(skip_locked=True))).all()]
    if not due:
        return 0
    for rule in {d.rule for d in due}:
        await data_keys.erase(session, [d.scope for d in due if d.rule == rule], rule, now)
    # A scope that never had a key is marked erased all the same: nothing is sealed into
    # it afterwards (a late note on an erased case finds it erased, not a fresh key).
    await session.execute(pg_insert(data_keys_table).values([
        {"scope": d.scope, "kek_id": None, "wrapped": None, "created_at": now, "erased_at": now,
         "erased_rule": d.rule} for d in due]).on_conflict_do_nothing(index_elements=["scope"]))
    if on_erase is not None:
        await on_erase(session, due)
    await session.execute(sa.update(erasures_table).where(
        any_of(erasures_table.c.scope, [d.scope for d in due])).values(done_at=now))
    return len(due)


async def prune_runtime_rows(session: AsyncSession, schedule_: RetentionSchedule, now: datetime) -> int:
    """Published outbox rows and processed inbox rows older than their rules. Unpublished
    outbox rows are never pruned (nothing accepted is lost)."""
    outbox_before = now - timedelta(days=schedule_.rule("outbox-published").days)
    inbox_before = now - timedelta(days=schedule_.rule("inbox-processed").days)
    pruned = await session.execute(sa.text(
        "DELETE FROM punte_outbox WHERE published_at IS NOT NULL AND published_at < :before"),
        {"before": outbox_before})
    count = pruned.rowcount or 0
    pruned = await session.execute(sa.text("DELETE FROM punte_inbox WHERE received_at < :before"),
                                   {"before": inbox_before})
    return count + (pruned.rowcount or 0)


async def purge(session: AsyncSession, data_keys: DataKeys, schedule_: RetentionSchedule, now: datetime,
                on_erase: Callable[[AsyncSession, Sequence[Due]], Awaitable[None]] | None = None) -> int:
    """One pass of a service's purge job, in the caller's transaction: the erasures due
    (``on_erase`` deletes the service's rows of each scope), then the runtime's own rows
    past their rules. Returns how much it did (0: nothing was due)."""
    done = await erase_due(session, data_keys, now, on_erase)
    done += await dead_letters.erase_expired(session, data_keys, schedule_, now)
    return done + await prune_runtime_rows(session, schedule_, now)


def due_at(schedule_: RetentionSchedule, rule: str, start: datetime) -> datetime:
    """When a record kept under ``rule`` from ``start`` is due for erasure."""
    return start + timedelta(days=schedule_.rule(rule).days)


def case_scope(case_id: str) -> str:
    """The data key scope of everything sealed about one case."""
    return f"case:{case_id}"


def cases_in(due: Sequence[Due]) -> list[str]:
    """The case ids among erasures due (scopes ``case:<id>``)."""
    return [d.scope.removeprefix("case:") for d in due if d.scope.startswith("case:")]
