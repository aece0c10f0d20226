"""Is this the same child? Exact matches go by pseudonym; without a CNP, a person must
confirm a likely match, so here we only score it."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date
from difflib import SequenceMatcher

SIMILAR_NAMES = 0.85


def fold(text: str | None) -> str:
    plain = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode()
    return " ".join(plain.lower().replace("-", " ").split())


@dataclass(frozen=True)
class Described:
    """A child as known by name, birth and place (never the CNP here)."""

    given_name: str | None
    family_name: str | None
    birth_date: date | None
    birth_year: int | None
    uat_siruta: int | None
    county: str


def name_similarity(a: Described, b: Described) -> float:
    one = f"{fold(a.given_name)} {fold(a.family_name)}".strip()
    two = f"{fold(b.given_name)} {fold(b.family_name)}".strip()
    if not one or not two:
        return 0.0
    # Names are often written in either order; take the better of both.
    swapped = f"{fold(b.family_name)} {fold(b.given_name)}".strip()
    return max(SequenceMatcher(None, one, two).ratio(), SequenceMatcher(None, one, swapped).ratio())


def likely_same_child(a: Described, b: Described) -> float | None:
    """The name score when name, birth and place all agree enough, else None."""
    if a.county != b.county or (a.uat_siruta and b.uat_siruta and a.uat_siruta != b.uat_siruta):
        return None
    if a.birth_date and b.birth_date:
        if a.birth_date != b.birth_date:
            return None
    elif a.birth_year and b.birth_year and abs(a.birth_year - b.birth_year) > 1:
        return None
    score = name_similarity(a, b)
    return score if score >= SIMILAR_NAMES else None
