"""Urgency P0–P3 from the categories and flags of a report, by the versioned rules table
contracts/reference/triage.yaml."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

ORDER = ("P0", "P1", "P2", "P3")


def most_urgent(levels: Iterable[str]) -> str:
    return min(levels, key=ORDER.index)


def triage(categories: Iterable[str], immediate_danger: bool, table: Mapping[str, Any]) -> str:
    levels = [table["categories"].get(c, table["default"]) for c in categories]
    if immediate_danger:
        levels.append(table["immediate_danger"])
    return most_urgent(levels or [table["default"]])
