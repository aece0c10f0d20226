"""The one shape of a refusal anywhere in Punte: a code from
contracts/reference/rejection-codes.yaml and a detail for the sender."""
from __future__ import annotations


class Refused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
