"""Who may see and end what of a case and its referrals, from referral's own record of the
case: the asker's relations put to the one rule (contracts.access, access.yaml), and a
referral cut to the view and the risk categories that rule gives. Pure."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts import access
from contracts.access import Relation, View

STATUTORY = "statutory-duty"
# The referrer's commands that end a referral and so silence its deadlines.
ENDING = frozenset({"cancel", "mark-error"})
# What a summary keeps: the referral's own state, urgency, categories, deadlines and outcome
# code, and that notes exist (their ids and times); never its history, the notes' text,
# reasons or the people working it (access.yaml, views).
SUMMARY = ("referral_id", "case_id", "referrer", "to", "urgency", "categories", "state", "kind",
           "service_id", "forwarded_from", "legal_basis", "do_not_contact", "deadlines",
           "requested_at", "updated_at", "outcome")


@dataclass(frozen=True)
class Sides:
    """Who stands where in a case: its lead, the institutions taking part, and those that
    reported it (who do not take part by reporting alone)."""

    lead: str | None
    participants: tuple[str, ...] = ()
    reporters: tuple[str, ...] = ()


def to_case(institution: str | None, case: Sides) -> frozenset[Relation]:
    return access.case_relations(institution, lead=case.lead, participants=case.participants,
                                 reporters=case.reporters)


def to_referral(institution: str | None, *, referrer: str, to: str, case: Sides | None) -> frozenset[Relation]:
    return access.referral_relations(institution, referrer=referrer, to=to,
                                     case_lead=case.lead if case else None,
                                     case_participants=case.participants if case else ())


def ends_statutory(command: str, legal_basis: str) -> bool:
    """Cancelling or marking in error a referral made on the statutory duty to act (P0/P1,
    information requests): the action referral.end-statutory, besides the lifecycle's rule."""
    return command in ENDING and legal_basis == STATUTORY


def in_plan_of(institution: str | None, relations: frozenset[Relation], *, referrer: str, to: str) -> bool:
    """The lead sees the whole plan of its case; anyone else the referrals it is a side of."""
    return Relation.LEAD in relations or (institution is not None and institution in (referrer, to))


def seen(referral: Mapping[str, Any], institution: str | None,
         relations: frozenset[Relation]) -> dict[str, Any] | None:
    """The referral as ``institution`` may see it (None: not at all): the whole of it or its
    summary, with only the risk categories its kind may know."""
    view = access.view_of(relations)
    if view is None:
        return None
    shown = dict(referral) if view is View.FULL else {
        **{k: referral[k] for k in SUMMARY if k in referral}, "owner": None, "history": [],
        "notes": [{"note_id": n["note_id"], "at": n["at"]} for n in referral.get("notes", [])]}
    shown["categories"] = list(access.visible_categories(institution, referral["categories"]))
    shown["view"] = view.value
    return shown
