"""What a new case is, given an authentic report: the checks a report must pass, then
triage and routing."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts.events import ReportSubmitted
from services.intake.domain import cnp as cnp_rules
from services.intake.domain.errors import ReportRejected
from services.intake.domain.pseudonym import child_ref
from services.intake.domain.routing import route
from services.intake.domain.triage import triage


@dataclass(frozen=True)
class Rules:
    """The reference data the rules read; built once from contracts/reference."""

    categories: frozenset[str]
    uat_county: Mapping[int, str]
    triage_table: Mapping[str, Any]
    routing_table: Mapping[str, Any]
    local_authority: Callable[[int], str | None]
    county_institution: Callable[[str, str], str]
    pseudonym_key: bytes


@dataclass(frozen=True)
class NewCase:
    child_ref: str
    uat_siruta: int
    categories: tuple[str, ...]
    urgency: str
    lead: str
    informed: tuple[str, ...]


def assess(report: ReportSubmitted, rules: Rules) -> NewCase:
    child = report.child
    if child.cnp is not None and not cnp_rules.is_valid(child.cnp):
        raise ReportRejected("INVALID_CNP", "CNP check digit or birth date is wrong")
    if child.cnp is None and not (child.given_name and child.family_name and child.birth_date):
        raise ReportRejected("CHILD_NOT_IDENTIFIABLE", "give a CNP, or names and birth date")
    unknown = [c for c in report.categories if c not in rules.categories]
    if unknown:
        raise ReportRejected("UNKNOWN_CATEGORY", f"unknown categories: {', '.join(unknown)}")
    county = rules.uat_county.get(child.uat_siruta)
    if county is None:
        raise ReportRejected("UNKNOWN_UAT", f"SIRUTA {child.uat_siruta} is not a known UAT")
    categories = tuple(dict.fromkeys(report.categories))
    routing = route(categories, child.uat_siruta, county, rules.routing_table,
                    rules.local_authority, rules.county_institution)
    return NewCase(
        child_ref=child_ref(rules.pseudonym_key, child.cnp, child.given_name, child.family_name,
                            child.birth_date),
        uat_siruta=child.uat_siruta, categories=categories,
        urgency=triage(categories, report.immediate_danger, rules.triage_table),
        lead=routing.lead, informed=routing.informed,
    )
