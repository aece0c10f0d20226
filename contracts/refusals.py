"""The one shape of a refusal anywhere in Punte: a code from
contracts/reference/rejection-codes.yaml and a detail for the sender."""
from __future__ import annotations

from typing import Any

from contracts.reference import rejection_codes


class Refused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def reason(code: str, detail: str | None = None) -> dict[str, Any]:
    """A refusal as it travels (outcomes, dead letters, HTTP error bodies): the code, the
    catalogue's Romanian message and its English one with the detail; a code outside the
    catalogue carries the detail in both."""
    known = rejection_codes().get(code)
    if known is None:
        return {"code": code, "message_ro": detail or code, "message_en": detail or code}
    return {"code": code, "message_ro": known.message_ro,
            "message_en": f"{known.message_en} ({detail})" if detail else known.message_en}
