"""Who may see and do what: the one rule every service asks (contracts/reference/access.yaml
and need-to-know.yaml), pure and without I/O.

A service works out how the asking institution stands to the resource (``case_relations``,
``referral_relations``), then asks ``decide`` for the operation's action; what it shows
is cut by ``view_of`` (how much of a case or referral) and ``visible_categories`` (which
risk categories the institution's kind may know). Everything unknown is refused: an
operation without a row, an institution the reference does not know, a role not listed."""
from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from contracts.reference import REFERENCE_DIR, _read_yaml, institutions, need_to_know
from contracts.refusals import Refused


class Relation(str, Enum):
    LEAD = "lead"
    PARTICIPANT = "participant"
    REPORTER = "reporter"
    RECEIVER = "receiver"
    REFERRER = "referrer"
    OWN = "own"
    ANY = "any"


class View(str, Enum):
    FULL = "full"
    SUMMARY = "summary"


@dataclass(frozen=True)
class Grant:
    roles: frozenset[str]
    relations: frozenset[Relation]


@dataclass(frozen=True)
class Action:
    name: str
    grants: tuple[Grant, ...]
    refusal: str  # the code for a principal that takes part but may not do this


@dataclass(frozen=True)
class Policy:
    roles: frozenset[str]
    actions: Mapping[str, Action]
    operations: Mapping[str, Mapping[str, str]]  # service -> "METHOD path" -> action
    public: frozenset[str]
    views: Mapping[Relation, View]


@dataclass(frozen=True)
class Decision:
    """The answer to "may this principal do this?": allowed, or refused with a code and the
    HTTP status that goes with it (404 hides a resource from those who take no part)."""

    allowed: bool
    code: str | None = None
    status: int = 200

    def __bool__(self) -> bool:
        return self.allowed


class Denied(Refused):
    """A refusal of the access rule, from any transport: the code, and the HTTP status that
    goes with it (an outcome on Kafka carries the code alone)."""

    def __init__(self, decision: Decision, detail: str | None = None) -> None:
        super().__init__(decision.code or "FORBIDDEN", detail or "")
        self.status = decision.status


def require(decision: Decision, detail: str | None = None) -> None:
    """Raise Denied unless ``decision`` allows."""
    if not decision:
        raise Denied(decision, detail)


ALLOWED = Decision(True)
# The code of a resource the asker takes no part in: the same as for one that does not exist.
HIDDEN = {"case": "UNKNOWN_CASE", "referral": "UNKNOWN_REFERRAL", "entry": "NOT_FOUND",
          "event": "NOT_FOUND"}


@functools.cache
def policy() -> Policy:
    data = _read_yaml(REFERENCE_DIR / "access.yaml")
    roles = frozenset(data["roles"])
    actions: dict[str, Action] = {}
    for name, spec in data["actions"].items():
        grants = []
        for grant in spec["grants"]:
            unknown = set(grant["roles"]) - roles
            if unknown:
                raise ValueError(f"access.yaml {name}: unknown roles {sorted(unknown)}")
            grants.append(Grant(frozenset(grant["roles"]), frozenset(Relation(r) for r in grant["relations"])))
        actions[name] = Action(name, tuple(grants), spec.get("refusal", "FORBIDDEN"))
    operations = {service: dict(ops) for service, ops in data["operations"].items()}
    for service, ops in operations.items():
        for operation, action in ops.items():
            if action not in actions:
                raise ValueError(f"access.yaml {service} {operation}: unknown action {action!r}")
    views = {Relation(k): View(v) for k, v in data["views"].items()}
    return Policy(roles, actions, operations, frozenset(data["public"]), views)


def action_for(service: str, method: str, path: str) -> str | None:
    """The action of an HTTP operation ("GET", "/v1/cases/{case_id}"), None if public;
    KeyError when the table has no row for it (refuse: NO_ACCESS_RULE)."""
    operation = f"{method.upper()} {path}"
    rules = policy()
    if operation in rules.public:
        return None
    for where in (service, "every"):
        action = rules.operations.get(where, {}).get(operation)
        if action is not None:
            return action
    raise KeyError(f"no access rule for {service} {operation}")


def case_relations(institution: str | None, *, lead: str | None, participants: Iterable[str] = (),
                   reporters: Iterable[str] = ()) -> frozenset[Relation]:
    """How an institution stands to a case. Reporting alone does not make it a participant."""
    if not institution:
        return frozenset({Relation.ANY})
    found = {Relation.ANY}
    if institution == lead:
        found |= {Relation.LEAD, Relation.PARTICIPANT}
    elif institution in set(participants):
        found.add(Relation.PARTICIPANT)
    if institution in set(reporters):
        found.add(Relation.REPORTER)
    return frozenset(found)


def referral_relations(institution: str | None, *, referrer: str, to: str, case_lead: str | None,
                       case_participants: Iterable[str] = ()) -> frozenset[Relation]:
    """How an institution stands to a referral (and to the case it belongs to)."""
    found = set(case_relations(institution, lead=case_lead, participants=case_participants))
    if institution and institution == to:
        found.add(Relation.RECEIVER)
    if institution and institution == referrer:
        found.add(Relation.REFERRER)
    return frozenset(found)


def decide(action: str, roles: Iterable[str], relations: Iterable[Relation],
           resource: str | None = None) -> Decision:
    """Allowed when one grant of ``action`` matches a role and a relation. Refused with the
    action's code when the principal takes part in the resource; with the resource's
    "unknown" code (404) when it takes no part, so ids cannot be probed; FORBIDDEN (403)
    when no role of the principal could ever do it."""
    rule = policy().actions.get(action)
    if rule is None:
        return Decision(False, "NO_ACCESS_RULE", 403)
    held, related = frozenset(roles), frozenset(relations)
    if any(g.roles & held and g.relations & related for g in rule.grants):
        return ALLOWED
    if not any(g.roles & held for g in rule.grants):
        return Decision(False, "FORBIDDEN", 403)
    # Having only reported a case is not taking part in it: the case stays hidden.
    takes_part = related - {Relation.ANY, Relation.REPORTER}
    if resource is not None and not takes_part:
        return Decision(False, HIDDEN.get(resource, "NOT_FOUND"), 404)
    return Decision(False, rule.refusal, 403)


def view_of(relations: Iterable[Relation]) -> View | None:
    """How much of a case or referral the relations show: the widest of them; None: nothing."""
    views = [policy().views[r] for r in relations if r in policy().views]
    if not views:
        return None
    return View.FULL if View.FULL in views else View.SUMMARY


def visible_categories(institution: str | None, categories: Iterable[str]) -> tuple[str, ...]:
    """The risk categories an institution may know of, by its kind (need-to-know.yaml).
    An institution the reference does not know sees none."""
    known = institutions().get(institution or "")
    allowed = need_to_know().visible.get(known.kind) if known else None
    if not allowed:
        return ()
    return tuple(c for c in categories if c in allowed)


def protected_in_messages(category: str) -> bool:
    """A special category (GDPR art. 9) that messages to people never name."""
    return category in need_to_know().protected_in_messages


