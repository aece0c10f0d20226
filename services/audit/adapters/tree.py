"""The Merkle tree's nodes in PostgreSQL, for the pure algorithms of domain/merkle.py: the
nodes a root, a proof or an integration reads are found first (``merkle.lookups``) and
fetched in one query, so a request costs one round trip however deep the tree is."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.adapters.tables import tree_nodes
from services.audit.domain import merkle

T = TypeVar("T")


class Nodes:
    """domain.merkle.NodeSource over nodes already read from the table."""

    def __init__(self, nodes: dict[tuple[int, int], bytes]) -> None:
        self._nodes = nodes

    def node(self, level: int, index: int) -> bytes:
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise KeyError(f"no tree node at level {level}, index {index}") from None


# The addresses as two arrays: one statement text whatever their number, prepared once
# (a tuple IN list was new SQL for each count of nodes).
_AT = sa.text("""
    SELECT n.level, n.index, n.hash FROM unnest(:levels, :indexes) AS a(level, index)
    JOIN tree_nodes n ON n.level = a.level AND n.index = a.index
""").bindparams(sa.bindparam("levels", type_=ARRAY(sa.SmallInteger)),
                sa.bindparam("indexes", type_=ARRAY(sa.BigInteger)))


async def read(session: AsyncSession, addresses: Iterable[tuple[int, int]] | None = None) -> Nodes:
    """The nodes at ``addresses`` (every node when None), in one query."""
    if addresses is None:
        query = sa.select(tree_nodes.c.level, tree_nodes.c.index, tree_nodes.c.hash)
        return Nodes({(r.level, r.index): r.hash for r in await session.execute(query)})
    wanted = sorted(addresses)
    if not wanted:
        return Nodes({})
    rows = await session.execute(_AT, {"levels": [level for level, _ in wanted], "indexes": [i for _, i in wanted]})
    return Nodes({(r.level, r.index): r.hash for r in rows})


async def compute(session: AsyncSession, fn: Callable[[merkle.NodeSource], T]) -> T:
    """``fn`` over the stored tree, every node it needs read at once."""
    return fn(await read(session, merkle.lookups(fn)))


async def store(session: AsyncSession, nodes: Iterable[tuple[int, int, bytes]]) -> None:
    """New (level, index, hash) nodes; one already there (integration rerun) is kept."""
    rows = [{"level": level, "index": index, "hash": digest} for level, index, digest in nodes]
    if rows:
        # One prepared statement run for every row (executemany), not a VALUES list of ~2
        # rows per leaf that SQLAlchemy compiled anew for each run of leaves.
        await session.execute(pg_insert(tree_nodes).on_conflict_do_nothing(), rows)
