"""The person's rights (GDPR art. 15-18) in the reference data: which purpose codes of
access-purposes.yaml serve which right (`right`: the access.yaml action it is stated for)."""
from __future__ import annotations

import functools

from contracts.reference import REFERENCE_DIR, _read_yaml


@functools.cache
def rights_purposes() -> dict[str, str]:
    """Purpose code -> the action of the right it serves (only the codes that serve one)."""
    data = _read_yaml(REFERENCE_DIR / "access-purposes.yaml")
    return {p["code"]: p["right"] for p in data["purposes"] if p.get("right")}


def serves_a_right(code: str | None) -> bool:
    """Whether a purpose is stated for one of the person's rights (export, rectification,
    restriction): the case's lead is told of those even when its own officer acts."""
    return (code or "") in rights_purposes()
