"""Intake's pure rules: CNP, triage, routing (every category), pseudonyms, assessment."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from contracts import reference
from contracts.events import ReportSubmitted, ReportSubmittedV2
from services.intake.bootstrap import build_rules
from services.intake.domain import cnp
from services.intake.domain.cases import assess, upgrade
from services.intake.domain.errors import ReportRejected
from services.intake.domain.pseudonym import child_ref
from services.intake.domain.routing import route
from services.intake.domain.triage import triage

RULES = build_rules("7e" * 32)  # a synthetic test key
NOW = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
COLONESTI, BACAU = 21891, 20297


def test_cnp_check_digit_and_birth_date():
    assert cnp.is_valid("5150412041230")
    assert cnp.birth_date("5150412041230") == date(2015, 4, 12)
    assert not cnp.is_valid("5150412041231"), "wrong check digit"
    assert not cnp.is_valid("5151312041230"), "month 13"
    assert not cnp.is_valid("515041204123"), "too short"
    assert not cnp.is_valid("0150412041230"), "no such sex/century digit"


def test_check_digit_of_ten_is_one():
    # 279146358279 weights; find a prefix whose remainder is 10 and check the rule.
    prefix = next(p for p in (f"5150412041{n:02d}" for n in range(100))
                  if sum(int(d) * w for d, w in zip(p, cnp.WEIGHTS, strict=True)) % 11 == 10)
    assert cnp.check_digit(prefix) == 1


@pytest.mark.parametrize("categories, danger, expected", [
    (["extreme_poverty"], False, "P2"),
    (["neglect"], False, "P1"),
    (["extreme_poverty", "sexual_abuse"], False, "P1"),
    (["missing_child"], False, "P0"),
    (["school_absenteeism"], True, "P0"),
])
def test_triage_takes_the_most_urgent_of_categories_and_flag(categories, danger, expected):
    assert triage(categories, danger, reference.triage_table()) == expected


def resolve(categories: list[str], siruta: int = COLONESTI):
    return route(categories, siruta, "BC", RULES.routing_table, RULES.local_authority,
                 RULES.county_institution)


TOKEN_TO_ID = {"SPAS": "spas-colonesti", "DGASPC": "dgaspc-bc", "DSP": "dsp-bc", "ISJ": "isj-bc",
               "CJRAE": "cjrae-bc", "IPJ": "ipj-bc"}


@pytest.mark.parametrize("category", sorted(reference.risk_categories()))
def test_every_category_is_routed_by_its_rule(category):
    rule = reference.routing_table()["categories"][category]
    routing = resolve([category])
    assert routing.lead == TOKEN_TO_ID[rule["lead"]]
    assert set(routing.informed) == {TOKEN_TO_ID[t] for t in rule.get("informed", [])} - {routing.lead}


def test_abuse_goes_to_dgaspc_and_the_local_service_and_police_for_sexual_abuse():
    routing = resolve(["sexual_abuse"], BACAU)
    assert routing.lead == "dgaspc-bc"
    assert set(routing.informed) == {"das-bacau", "ipj-bc"}


def test_several_categories_take_the_lead_by_precedence_and_inform_the_union():
    routing = resolve(["school_absenteeism", "neglect"])
    assert routing.lead == "dgaspc-bc"
    assert set(routing.informed) == {"spas-colonesti", "cjrae-bc", "isj-bc"}


def test_pseudonym_is_keyed_and_stable():
    key = b"k" * 32
    assert child_ref(key, "5150412041230", None, None, None) == child_ref(key, "5150412041230", "x", "y", None)
    assert child_ref(key, "5150412041230", None, None, None) != child_ref(b"j" * 32, "5150412041230", None, None, None)
    by_name = child_ref(key, None, "Ana-Maria", "Testescu", date(2015, 4, 12))
    assert by_name == child_ref(key, None, " ana-maria ", "TESTESCU", date(2015, 4, 12))
    assert "5150412041230" not in child_ref(key, "5150412041230", None, None, None)


def report(**changes) -> ReportSubmitted:
    data = {
        "reporter": {"institution": "isj-bc", "role": "school-counsellor"}, "channel": "school",
        "child": {"cnp": "5150412041230", "uat_siruta": COLONESTI},
        "categories": ["school_absenteeism"], "description": "Date sintetice.",
    }
    return ReportSubmitted.model_validate({**data, **changes})


def test_assess_builds_the_case():
    case = assess(upgrade(report()), RULES, NOW)
    assert (case.urgency, case.lead, case.uat_siruta) == ("P2", "spas-colonesti", COLONESTI)


@pytest.mark.parametrize("changes, code", [
    ({"child": {"cnp": "5150412041231", "uat_siruta": COLONESTI}}, "INVALID_CNP"),
    ({"child": {"given_name": "Ana", "uat_siruta": COLONESTI}}, "CHILD_NOT_IDENTIFIABLE"),
    ({"child": {"cnp": "5150412041230", "uat_siruta": 1}}, "UNKNOWN_UAT"),
    ({"categories": ["astrology"]}, "UNKNOWN_CATEGORY"),
])
def test_assess_refuses_with_a_code(changes, code):
    with pytest.raises(ReportRejected) as refused:
        assess(upgrade(report(**changes)), RULES, NOW)
    assert refused.value.code == code


def report_v2(uat_siruta: int, county: str) -> ReportSubmittedV2:
    return ReportSubmittedV2.model_validate({
        "reporter": {"institution": "isj-bc", "role": "school-counsellor"}, "channel": "school",
        "child": {"cnp": "5150412041230", "uat_siruta": uat_siruta, "county": county},
        "risks": [{"category": "school_absenteeism"}], "description": "Date sintetice.",
    })


def test_a_county_that_contradicts_the_uat_is_refused_not_overridden():
    """What was wrong (issue #16): Bacău municipality named with county NT became a BC case
    without a word. Which of the two the sender got wrong is theirs to say."""
    with pytest.raises(ReportRejected) as refused:
        assess(report_v2(BACAU, "NT"), RULES, NOW)
    assert refused.value.code == "UAT_COUNTY_CONFLICT"
    assert "NT" not in refused.value.detail and str(BACAU) not in refused.value.detail
    case = assess(report_v2(BACAU, "BC"), RULES, NOW)
    assert (case.county, case.uat_siruta) == ("BC", BACAU)
