"""What every benchmark here prints alongside its figures: the machine, and rounded
numbers for the final JSON line."""
from __future__ import annotations

import os
import platform
from typing import Any


def machine(setup: str) -> str:
    """Cores, architecture, kernel and Python, then what was measured on (``setup``)."""
    return (f"{os.cpu_count()} cores ({platform.machine()}, {platform.system()} {platform.release()}), "
            f"Python {platform.python_version()}; {setup}")


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4 if abs(value) < 1 else 2)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value
