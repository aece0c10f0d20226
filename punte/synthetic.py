"""Synthetic children and reports for the demo, tests and benchmarks. Every name and CNP
here is generated; none belongs to a real person."""
from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from contracts.reference import institutions, uats
from services.intake.domain.cnp import check_digit

GIVEN = ["Andrei", "Maria", "Ioana", "Mihai", "Elena", "Darius", "Sofia", "Luca", "Bianca",
         "Matei", "Ana", "David", "Irina", "Tudor", "Alexia", "Radu"]
FAMILY = ["Exemplu", "Testescu", "Fictivu", "Demonstrescu", "Sinteticu", "Probescu"]
BACAU_COUNTY_CODE = "04"

# What a reporter of each kind typically sees, and through which channel.
PROFILES: dict[str, tuple[str, str, list[list[str]]]] = {
    "DGASPC": ("helpline-119", "child-protection-specialist",
               [["physical_abuse"], ["sexual_abuse"], ["neglect", "emotional_abuse"], ["missing_child"]]),
    "SPAS": ("social-worker", "social-worker",
             [["neglect"], ["parents_abroad"], ["extreme_poverty"], ["school_absenteeism"]]),
    "DAS": ("social-worker", "social-worker",
            [["neglect"], ["parents_abroad"], ["begging"], ["domestic_violence"]]),
    "DSP": ("family-doctor", "family-doctor",
            [["health_risk"], ["pregnant_minor"], ["disability"], ["neglect", "health_risk"]]),
    "ISJ": ("school", "school-counsellor",
            [["school_absenteeism"], ["bullying"], ["online_violence"], ["special_educational_needs"]]),
    "CJRAE": ("school", "school-counsellor", [["special_educational_needs"], ["bullying"]]),
    "IPJ": ("police-patrol", "police-officer",
            [["domestic_violence"], ["trafficking"], ["offence_under_14"], ["missing_child"]]),
    "PL": ("police-patrol", "police-officer", [["begging"], ["domestic_violence"]]),
}


def synthetic_cnp(rng: random.Random, born: date) -> str:
    sex = rng.choice("56")  # born 2000 or later
    first12 = f"{sex}{born:%y%m%d}{BACAU_COUNTY_CODE}{rng.randrange(1, 1000):03d}"
    return first12 + str(check_digit(first12))


def synthetic_child(rng: random.Random) -> dict[str, Any]:
    born = date(2026, 6, 1) - timedelta(days=rng.randrange(365, 17 * 365))
    siruta = rng.choice(list(uats()))
    if rng.random() < 0.7:
        return {"cnp": synthetic_cnp(rng, born), "uat_siruta": siruta}
    return {"given_name": rng.choice(GIVEN), "family_name": rng.choice(FAMILY),
            "birth_date": born.isoformat(), "uat_siruta": siruta}


def synthetic_report(rng: random.Random, reporter: str) -> dict[str, Any]:
    kind = institutions()[reporter].kind
    channel, role, category_sets = PROFILES[kind]
    categories = rng.choice(category_sets)
    return {
        "reporter": {"institution": reporter, "role": role},
        "channel": channel,
        "child": synthetic_child(rng),
        "categories": categories,
        "description": "Situație semnalată în cadrul demonstrației (date sintetice).",
        "immediate_danger": "missing_child" in categories or rng.random() < 0.05,
    }


def reporters() -> list[str]:
    return [i.id for i in institutions().values() if i.kind in PROFILES]
