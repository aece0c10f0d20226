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
    where = {"uat_siruta": siruta, "county": "BC"}
    if rng.random() < 0.7:
        return {"cnp": synthetic_cnp(rng, born), **where}
    if rng.random() < 0.8:
        return {"given_name": rng.choice(GIVEN), "family_name": rng.choice(FAMILY),
                "birth_date": born.isoformat(), **where}
    return {"given_name": rng.choice(GIVEN), "family_name": rng.choice(FAMILY),
            "estimated_age_years": min(17, (date(2026, 6, 1) - born).days // 365), **where}


def synthetic_household(rng: random.Random, categories: list[str]) -> dict[str, Any]:
    household: dict[str, Any] = {}
    if rng.random() < 0.5:
        household["carer"] = {"given_name": rng.choice(GIVEN), "family_name": rng.choice(FAMILY),
                              "relationship": rng.choice(["mother", "father", "grandparent"])}
    if rng.random() < 0.3:
        born = date(2026, 6, 1) - timedelta(days=rng.randrange(365, 17 * 365))
        household["siblings"] = [{"cnp": synthetic_cnp(rng, born)}]
    if set(categories) & {"physical_abuse", "sexual_abuse", "emotional_abuse"} and rng.random() < 0.5:
        household["alleged_abuser_in_household"] = True
    return household


PLACES = {"school": "school", "helpline-119": "family", "police-patrol": "public-space"}


def synthetic_report(rng: random.Random, reporter: str) -> dict[str, Any]:
    """A report written as v2 (ro.punte.report.submitted.v2), as the reporter's system holds
    it; punte.institution seals it into v3 before it is sent."""
    kind = institutions()[reporter].kind
    channel, role, category_sets = PROFILES[kind]
    categories = rng.choice(category_sets)
    return {
        "reporter": {"institution": reporter, "role": role},
        "channel": channel,
        "child": synthetic_child(rng),
        "household": synthetic_household(rng, categories),
        "place_of_occurrence": PLACES.get(channel, "family"),
        "risks": [{"category": c, "indicators": []} for c in categories],
        "description": "Situație semnalată în cadrul demonstrației (date sintetice).",
        "immediate_danger": "missing_child" in categories or rng.random() < 0.05,
    }


def reporters(county: str = "BC") -> list[str]:
    return [i.id for i in institutions().values() if i.kind in PROFILES and i.county == county]
