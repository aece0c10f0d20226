"""The audit trail as a spreadsheet opens it (the CSV export). Event types, case ids and
topics come from what institutions sent; a cell that starts with = + - @, a tab or a
carriage return would be run by a spreadsheet as a formula (CSV injection), so such a cell
is prefixed with a single quote, as OWASP advises. The JSON Lines export, which an auditor
verifies, keeps every value exactly as recorded."""
from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value``, quoted if a spreadsheet would read it as a formula; numbers and None as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
