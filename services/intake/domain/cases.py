"""What a new case is, given an authentic report: the checks a report must pass, then
who the child is (pseudonym), how urgent, who must know, by when, and whether the
household may be contacted."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Any

from contracts.events import ChildIdentityV2, Person, ReportSubmitted, ReportSubmittedV2, Risk
from services.intake.domain import cnp as cnp_rules
from services.intake.domain.deadlines import deadlines_for
from services.intake.domain.errors import ReportRejected
from services.intake.domain.matching import Described
from services.intake.domain.pseudonym import child_ref
from services.intake.domain.routing import Routing, route
from services.intake.domain.triage import triage

# Categories where the household itself may be the danger: nobody contacts it.
DO_NOT_CONTACT_CATEGORIES = frozenset({"domestic_violence"})


@dataclass(frozen=True)
class Rules:
    """The reference data the rules read; built once from contracts/reference."""

    categories: frozenset[str]
    uat_county: Mapping[int, str]
    triage_table: Mapping[str, Any]
    routing_table: Mapping[str, Any]
    urgency_levels: Mapping[str, Any]
    observation_items: Mapping[str, frozenset[str]]
    local_authority: Callable[[int], str | None]
    county_institution: Callable[[str, str], str | None]
    pseudonym_key: bytes

    @cached_property
    def routed_counties(self) -> frozenset[str]:
        """Counties whose UATs and local services Punte knows, so it routes within them."""
        return frozenset(self.uat_county.values())


@dataclass(frozen=True)
class NewCase:
    child_ref: str
    sibling_refs: tuple[str, ...]
    described: Described
    uat_siruta: int | None
    county: str
    categories: tuple[str, ...]
    urgency: str
    lead: str
    informed: tuple[str, ...]
    do_not_contact: bool
    deadlines: Mapping[str, datetime]
    place_of_occurrence: str


def upgrade(report: ReportSubmitted) -> ReportSubmittedV2:
    """A version-1 report read as version 2 (v1 senders keep working)."""
    child = report.child
    return ReportSubmittedV2(
        reporter=report.reporter, channel=report.channel,
        child=ChildIdentityV2(cnp=child.cnp, given_name=child.given_name,
                              family_name=child.family_name, birth_date=child.birth_date,
                              uat_siruta=child.uat_siruta),
        risks=[Risk(category=c) for c in report.categories], description=report.description,
        immediate_danger=report.immediate_danger, occurred_at=report.occurred_at,
    )


# Refusal details name the field and the rule, never the value sent: a mistyped CNP or a
# name would otherwise travel in outcomes, dead letters and logs.

def _check_cnp(value: str | None, field: str) -> None:
    if value is not None and not cnp_rules.is_valid(value):
        raise ReportRejected("INVALID_CNP", f"{field}: check digit or birth date is wrong")


def _birth(child: ChildIdentityV2 | Person) -> date | None:
    if child.birth_date:
        return child.birth_date
    return cnp_rules.birth_date(child.cnp) if child.cnp else None


def _where(child: ChildIdentityV2, rules: Rules) -> tuple[int | None, str]:
    """The child's UAT and county, checked against what Punte knows."""
    if child.uat_siruta is not None and child.uat_siruta in rules.uat_county:
        county = rules.uat_county[child.uat_siruta]
        if child.county != county:
            # Which of the two is wrong is the sender's to say, not ours to guess (issue #16).
            raise ReportRejected("UAT_COUNTY_CONFLICT", "child.uat_siruta is not a UAT of child.county")
        return child.uat_siruta, county
    if child.county in rules.routed_counties:
        raise ReportRejected("UNKNOWN_UAT", "child.uat_siruta is not a UAT of child.county")
    return child.uat_siruta, child.county  # another county: its DGASPC places the UAT


def _route(categories: tuple[str, ...], uat: int | None, county: str, rules: Rules) -> Routing:
    if county in rules.routed_counties:
        assert uat is not None
        return route(categories, uat, county, rules.routing_table, rules.local_authority,
                     rules.county_institution)
    lead = rules.county_institution("DGASPC", county)
    if lead is None:
        raise ReportRejected("UNKNOWN_UAT", "no DGASPC is known for child.county")
    return Routing(lead, ())


def _check_observation_sheet(report: ReportSubmittedV2, rules: Rules) -> None:
    sheet = report.observation_sheet
    if sheet is None:
        return
    for section, known in rules.observation_items.items():
        unknown = set(getattr(sheet, section)) - known
        if unknown:
            raise ReportRejected("UNKNOWN_OBSERVATION_ITEM",
                                 f"observation_sheet.{section}: {len(unknown)} item(s) not on the sheet")


def assess(report: ReportSubmittedV2, rules: Rules, received_at: datetime) -> NewCase:
    child = report.child
    _check_cnp(child.cnp, "child.cnp")
    for n, sibling in enumerate(report.household.siblings):
        _check_cnp(sibling.cnp, f"household.siblings[{n}].cnp")
    named = bool(child.given_name and child.family_name)
    if child.cnp is None and not (named and (child.birth_date or child.estimated_age_years is not None)):
        raise ReportRejected("CHILD_NOT_IDENTIFIABLE",
                             "give a CNP, or names with a birth date or an estimated age")
    categories = tuple(dict.fromkeys(r.category for r in report.risks))
    unknown = [n for n, risk in enumerate(report.risks) if risk.category not in rules.categories]
    if unknown:
        raise ReportRejected("UNKNOWN_CATEGORY", ", ".join(f"risks[{n}].category" for n in unknown)
                             + " not in the catalogue (contracts/reference/risk-categories.yaml)")
    _check_observation_sheet(report, rules)
    uat, county = _where(child, rules)
    routing = _route(categories, uat, county, rules)
    urgency = triage(categories, report.immediate_danger, rules.triage_table)

    birth = _birth(child)
    place = f"{county}:{uat or ''}"
    birth_year = birth.year if birth else received_at.year - (child.estimated_age_years or 0)
    household = report.household
    siblings = tuple(
        child_ref(rules.pseudonym_key, s.cnp, s.given_name, s.family_name, _birth(s), place)
        for s in household.siblings if s.cnp or (s.given_name and s.family_name and s.birth_date)
    )
    return NewCase(
        child_ref=child_ref(rules.pseudonym_key, child.cnp, child.given_name, child.family_name,
                            birth, place),
        sibling_refs=siblings,
        described=Described(child.given_name, child.family_name, birth, birth_year, uat, county),
        uat_siruta=uat, county=county, categories=categories, urgency=urgency,
        lead=routing.lead, informed=routing.informed,
        do_not_contact=household.alleged_abuser_in_household or household.domestic_violence
        or bool(DO_NOT_CONTACT_CATEGORIES.intersection(categories)),
        deadlines=deadlines_for(urgency, received_at, rules.urgency_levels),
        place_of_occurrence=report.place_of_occurrence,
    )


@dataclass(frozen=True)
class Merge:
    categories: tuple[str, ...]
    new_categories: tuple[str, ...]
    urgency: str


def overlaps(case_categories: tuple[str, ...] | list[str], new: NewCase) -> bool:
    return bool(set(case_categories) & set(new.categories))


def merge(case_categories: list[str], case_urgency: str, new: NewCase) -> Merge:
    """A report joining an open case: categories add up, urgency only rises."""
    added = tuple(c for c in new.categories if c not in case_categories)
    return Merge(tuple(case_categories) + added, added,
                 min(case_urgency, new.urgency))  # "P0" < "P1" < …: the most urgent
