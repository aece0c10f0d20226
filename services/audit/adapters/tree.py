"""The Merkle tree's nodes in PostgreSQL, read by the pure algorithms of domain/merkle.py
inside ``session.run_sync`` (a root or a proof takes a few indexed lookups)."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.audit.adapters.tables import tree_nodes


class StoredNodes:
    """domain.merkle.NodeSource over the tree_nodes table, for one synchronous session."""

    def __init__(self, session: Session, preloaded: dict[tuple[int, int], bytes] | None = None) -> None:
        self._session = session
        self._cache = dict(preloaded or {})

    def node(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._cache:
            found = self._session.execute(
                sa.select(tree_nodes.c.hash).where(tree_nodes.c.level == level, tree_nodes.c.index == index)
            ).scalar_one_or_none()
            if found is None:
                raise KeyError(f"no tree node at level {level}, index {index}")
            self._cache[key] = found
        return self._cache[key]
