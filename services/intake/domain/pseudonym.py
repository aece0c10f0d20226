"""Keyed pseudonyms link reports about the same child without carrying who the child is."""
from __future__ import annotations

import hashlib
import hmac
from datetime import date

from services.intake.domain.matching import fold


def child_ref(key: bytes, cnp: str | None, given_name: str | None, family_name: str | None,
              birth: date | None, place: str = "") -> str:
    """From the CNP when known; otherwise from the folded names with the birth date, or,
    when only an age is estimated, with the place (a weaker link, checked by people)."""
    if cnp:
        material = f"cnp:{cnp}"
    elif birth:
        material = f"name:{fold(given_name)}|{fold(family_name)}|{birth}"
    else:
        material = f"name-place:{fold(given_name)}|{fold(family_name)}|{place}"
    return "ch-" + hmac.new(key, material.encode(), hashlib.sha256).hexdigest()[:32]
