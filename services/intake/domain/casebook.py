"""What a batch of reports sees of the open cases (decision 0033): the database's, read once
for the whole batch, and what earlier reports of the same batch opened, joined, linked and
told of the child. Each report is decided against it in order, so a batch gives the
answers that reports taken one at a time would have given: the second report of a child
joins the case the first opened, a sibling's case opened just before is named, a
look-alike opened just before is flagged."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from services.intake.domain.matching import Described
from services.intake.domain.rights import joinable

# The most open cases a report's look-alike search compares it with (as the query's limit).
LOOKALIKES_COMPARED = 200


@dataclass
class OpenCase:
    """An open case as the rules need it; categories and urgency change when a report joins."""

    case_id: str
    child_ref: str
    county: str
    uat_siruta: int | None
    birth_year: int | None
    categories: list[str]
    urgency: str
    lead: str
    informed: list[str]
    opened_at: datetime
    opened_here: bool = False  # opened by a report of this batch


@dataclass(frozen=True)
class Known:
    """Who a child is said to be, as far as look-alikes are compared (its current identity)."""

    given_name: str | None
    family_name: str | None
    birth_date: date | None


@dataclass
class Casebook:
    cases: dict[str, OpenCase] = field(default_factory=dict)
    restricted: set[str] = field(default_factory=set)  # case ids whose processing is restricted
    known: dict[str, Known] = field(default_factory=dict)  # child_ref -> current identity
    _household: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _order: dict[str, int] = field(default_factory=dict)  # case id -> when this book learnt of it
    _of_child: defaultdict[str, list[OpenCase]] = field(default_factory=lambda: defaultdict(list))

    def add(self, case: OpenCase) -> None:
        if case.case_id not in self.cases:
            self._order[case.case_id] = len(self._order)
            self.cases[case.case_id] = case
            self._of_child[case.child_ref].append(case)

    def link(self, child_ref: str, sibling_refs: Iterable[str]) -> None:
        """Children of one household, both ways (as household_links holds them)."""
        for sibling in sibling_refs:
            if sibling != child_ref:
                self._household[child_ref].add(sibling)
                self._household[sibling].add(child_ref)

    def joinable(self, child_ref: str) -> list[OpenCase]:
        """The child's open cases a new report may join, newest first: none restricted."""
        return joinable(sorted(self._of_child.get(child_ref, ()), key=self._age, reverse=True), self.restricted)

    def siblings_cases(self, child_ref: str) -> list[str]:
        """The open cases of every child known to share the household, oldest first."""
        found = [c for sibling in self._household.get(child_ref, ()) for c in self._of_child.get(sibling, ())]
        return [c.case_id for c in sorted(found, key=self._age)]

    def lookalikes(self, described: Described, child_ref: str) -> list[tuple[OpenCase, Described]]:
        """Open cases of other children of about the same age and place whose identity is
        known: the only ones worth comparing names with (repository.lookalikes' filter)."""
        fitting = [case for case in self.cases.values()
                   if case.child_ref != child_ref and case.child_ref in self.known
                   and case.county == described.county
                   and (described.uat_siruta is None or case.uat_siruta in (None, described.uat_siruta))
                   and (described.birth_year is None
                        or (case.birth_year is not None and abs(case.birth_year - described.birth_year) <= 1))]
        found = []
        for case in sorted(fitting, key=self._age)[:LOOKALIKES_COMPARED]:
            known = self.known[case.child_ref]
            found.append((case, Described(known.given_name, known.family_name, known.birth_date,
                                          case.birth_year, case.uat_siruta, case.county)))
        return found

    def _age(self, case: OpenCase) -> tuple[datetime, int]:
        return case.opened_at, self._order[case.case_id]
