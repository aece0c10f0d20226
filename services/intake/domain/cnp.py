"""The Romanian personal numeric code (CNP): S YYMMDD JJ NNN C, C a check digit."""
from __future__ import annotations

from datetime import date

WEIGHTS = (2, 7, 9, 1, 4, 6, 3, 5, 8, 2, 7, 9)
# First digit: sex and century of birth (7-9: residents and foreigners, 1900s by convention).
CENTURY = {"1": 1900, "2": 1900, "3": 1800, "4": 1800, "5": 2000, "6": 2000,
           "7": 1900, "8": 1900, "9": 1900}


def check_digit(first12: str) -> int:
    remainder = sum(int(d) * w for d, w in zip(first12, WEIGHTS, strict=True)) % 11
    return 1 if remainder == 10 else remainder


def birth_date(cnp: str) -> date | None:
    try:
        return date(CENTURY[cnp[0]] + int(cnp[1:3]), int(cnp[3:5]), int(cnp[5:7]))
    except (KeyError, ValueError):
        return None


def is_valid(cnp: str) -> bool:
    if len(cnp) != 13 or not cnp.isdigit() or birth_date(cnp) is None:
        return False
    return check_digit(cnp[:12]) == int(cnp[12])
