"""Keyed pseudonyms link reports about the same child without carrying who the child is."""
from __future__ import annotations

import hashlib
import hmac
import unicodedata
from datetime import date


def _fold(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(plain.lower().split())


def child_ref(key: bytes, cnp: str | None, given_name: str | None, family_name: str | None,
              birth: date | None) -> str:
    if cnp:
        material = f"cnp:{cnp}"
    else:
        material = f"name:{_fold(given_name or '')}|{_fold(family_name or '')}|{birth}"
    return "ch-" + hmac.new(key, material.encode(), hashlib.sha256).hexdigest()[:32]
