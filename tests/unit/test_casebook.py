"""What a batch of reports sees of the open cases (services/intake/domain/casebook.py): the
child's cases newest first without the restricted ones, a household's cases oldest first,
and look-alikes only of other children of about the same age and place."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from services.intake.domain.casebook import Casebook, Known, OpenCase
from services.intake.domain.matching import Described

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


def case(case_id: str, child: str, minutes: int, uat: int | None = 21891, birth_year: int | None = 2015,
         county: str = "BC") -> OpenCase:
    return OpenCase(case_id, child, county, uat, birth_year, ["neglect"], "P2", "spas-colonesti", [],
                    T0 + timedelta(minutes=minutes))


def test_a_childs_joinable_cases_are_newest_first_and_never_restricted():
    book = Casebook(restricted={"c-2"})
    for c in (case("c-1", "ch-a", 0), case("c-2", "ch-a", 5), case("c-3", "ch-a", 10), case("c-4", "ch-b", 20)):
        book.add(c)
    assert [c.case_id for c in book.joinable("ch-a")] == ["c-3", "c-1"]
    assert book.joinable("ch-unknown") == []


def test_a_households_cases_are_oldest_first_both_ways():
    book = Casebook()
    book.add(case("c-b2", "ch-b", 10))
    book.add(case("c-b1", "ch-b", 0))
    book.add(case("c-c", "ch-c", 5))
    book.link("ch-a", ["ch-b", "ch-a"])
    book.link("ch-c", ["ch-a"])
    assert book.siblings_cases("ch-a") == ["c-b1", "c-c", "c-b2"]
    assert book.siblings_cases("ch-b") == [], "a's siblings are not each other's unless said"


def test_lookalikes_are_other_known_children_of_about_the_same_age_and_place():
    book = Casebook()
    for c in (case("same-child", "ch-a", 0), case("near", "ch-b", 1), case("unknown-identity", "ch-c", 2),
              case("other-uat", "ch-d", 3, uat=20000), case("no-uat", "ch-e", 4, uat=None),
              case("too-old", "ch-f", 5, birth_year=2012), case("other-county", "ch-g", 6, county="CJ")):
        book.add(c)
    book.known = {ref: Known("Ana", "Testescu", date(2015, 4, 12)) for ref in
                  ("ch-a", "ch-b", "ch-d", "ch-e", "ch-f", "ch-g")}
    looking = Described("Ana", "Testescu", None, 2015, 21891, "BC")
    found = book.lookalikes(looking, "ch-a")
    assert [c.case_id for c, _ in found] == ["near", "no-uat"]
    assert found[0][1] == Described("Ana", "Testescu", date(2015, 4, 12), 2015, 21891, "BC")
