"""Intake and referral read the same ingress topics; each event type declared there is
answered by exactly one of them, the one contracts/topics.yaml names, so no message goes
unanswered and none is answered twice."""
from __future__ import annotations

from contracts import reference
from services.intake.bootstrap import handled_elsewhere
from services.referral.handlers import INGRESS_TYPES


def declared_handlers() -> dict[str, str]:
    return {e["type"]: e.get("handled_by", "intake") for t in reference.topics() if t["kind"] == "ingress"
            for e in t["events"]}


def test_referral_answers_the_types_topics_yaml_gives_it():
    assert INGRESS_TYPES == {t for t, service in declared_handlers().items() if service == "referral"}


def test_intake_leaves_exactly_those_to_referral():
    assert handled_elsewhere() == INGRESS_TYPES
