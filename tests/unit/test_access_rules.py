"""The one access rule (contracts/access.py, access.yaml): grants, hidden resources,
views and need to know, failing closed on everything unknown."""
from __future__ import annotations

from pathlib import Path

import pytest

from contracts import access
from contracts.access import Relation, View, decide


def test_every_action_named_by_an_operation_exists_and_every_role_is_declared():
    rules = access.policy()
    for service, operations in rules.operations.items():
        for operation, action in operations.items():
            assert action in rules.actions, (service, operation)
    for action in rules.actions.values():
        for grant in action.grants:
            assert grant.roles <= rules.roles


def test_an_operation_without_a_row_is_refused():
    assert access.action_for("referral", "GET", "/v1/cases/{case_id}") == "case.read"
    assert access.action_for("audit", "GET", "/health/live") is None  # public
    with pytest.raises(KeyError):
        access.action_for("referral", "DELETE", "/v1/cases/{case_id}")
    assert decide("no.such.action", ["case-manager"], [Relation.ANY]).code == "NO_ACCESS_RULE"


def test_only_participants_refer_and_a_reporter_is_not_one():
    reporter = access.case_relations("isj-bc", lead="dgaspc-bc", participants=["dgaspc-bc", "spas-colonesti"],
                                     reporters=["isj-bc"])
    assert Relation.PARTICIPANT not in reporter and Relation.REPORTER in reporter
    # Reporting only is not taking part: the case is hidden from the reporter like from anyone.
    refused = decide("referral.request", ["case-manager"], reporter, resource="case")
    assert (refused.allowed, refused.code, refused.status) == (False, "UNKNOWN_CASE", 404)
    informed = access.case_relations("spas-colonesti", lead="dgaspc-bc", participants=["spas-colonesti"])
    assert decide("case.close", ["case-manager"], informed, resource="case").code == "NOT_CASE_LEAD"
    stranger = access.case_relations("ipj-bc", lead="dgaspc-bc", participants=["dgaspc-bc"])
    hidden = decide("case.read", ["case-manager"], stranger, resource="case")
    assert (hidden.code, hidden.status) == ("UNKNOWN_CASE", 404)
    participant = access.case_relations("spas-colonesti", lead="dgaspc-bc", participants=["spas-colonesti"])
    assert decide("referral.request", ["case-manager"], participant, resource="case")


def test_roles_that_no_grant_names_are_forbidden_whatever_the_relation():
    lead = access.case_relations("dgaspc-bc", lead="dgaspc-bc")
    for roles in (["auditor"], ["operator"], [], ["made-up"]):
        assert decide("case.read", roles, lead, resource="case").code == "FORBIDDEN"
    assert decide("audit.search", ["case-manager"], [Relation.ANY]).code == "FORBIDDEN"


def test_a_statutory_referral_is_ended_by_the_lead_or_a_supervisor_only():
    reporter_side = access.referral_relations("isj-bc", referrer="isj-bc", to="dgaspc-bc", case_lead="dgaspc-bc")
    assert decide("referral.end-statutory", ["case-manager"], reporter_side, "referral").code == "NOT_CASE_LEAD"
    assert decide("referral.end-statutory", ["supervisor"], reporter_side, "referral")
    lead_side = access.referral_relations("dgaspc-bc", referrer="isj-bc", to="dgaspc-bc", case_lead="dgaspc-bc")
    assert decide("referral.end-statutory", ["case-manager"], lead_side, "referral")


def test_views_widest_relation_wins_and_no_relation_sees_nothing():
    assert access.view_of([Relation.ANY]) is None
    assert access.view_of([Relation.REFERRER, Relation.ANY]) is View.SUMMARY
    assert access.view_of([Relation.REFERRER, Relation.PARTICIPANT]) is View.FULL


def test_need_to_know_fails_closed_for_unknown_institutions():
    everything = ("neglect", "sexual_abuse", "health_risk", "school_absenteeism")
    assert access.visible_categories("dgaspc-bc", everything) == everything
    police = access.visible_categories("ipj-bc", everything)
    assert "health_risk" not in police and "school_absenteeism" not in police and "sexual_abuse" in police
    assert access.visible_categories("no-such-institution", everything) == ()
    assert access.visible_categories(None, everything) == ()


def test_a_service_with_an_operation_that_has_no_rule_does_not_start():
    from fastapi import APIRouter

    from runtime.service import ServiceSpec, create_app
    from runtime.settings import Settings

    router = APIRouter(prefix="/v1")

    @router.get("/secrets")
    async def secrets() -> dict:
        return {}

    spec = ServiceSpec("referral", Path("."), lambda rt: [], [router], stats=None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="GET /v1/secrets"):
        create_app(spec, Settings(service="referral"))
