"""Due times that start at receipt, from the urgency levels of contracts/reference/
urgency.yaml: a 24/7 clock for P0/P1, working days for P2/P3."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from runtime.clock import due


def deadlines_for(urgency: str, received_at: datetime, levels: Mapping[str, Any]) -> dict[str, datetime]:
    level = levels[urgency]
    return {step: due(received_at, duration, level["clock"])
            for step, duration in level["deadlines"].items()}
