"""The HTTP side of contracts.access: a FastAPI dependency that admits a token whose roles
could do an operation's action, and the refusal of a decision. Which relation the asker
has to the resource is the endpoint's to find out (it reads the resource); the rule it then
asks is contracts.access.decide, the same for every service, consumer and page."""
from __future__ import annotations

from collections.abc import Iterable

from fastapi import Depends, HTTPException

from contracts.access import Decision, Relation, decide
from contracts.refusals import reason
from runtime.tokens import Principal, require_role


def permit(action: str):
    """FastAPI dependency: a valid token with a role that some grant of ``action`` names
    (FORBIDDEN otherwise). Relations are checked by the endpoint with ``check``."""
    authenticated = require_role()

    async def dependency(principal: Principal = Depends(authenticated)) -> Principal:
        refuse_unless(decide(action, principal.roles, [Relation.ANY, Relation.OWN, Relation.LEAD,
                                                       Relation.PARTICIPANT, Relation.RECEIVER,
                                                       Relation.REFERRER, Relation.REPORTER]))
        return principal

    dependency.action = action  # type: ignore[attr-defined]  # read by the access matrix test
    return dependency


def check(action: str, principal: Principal, relations: Iterable[Relation],
          resource: str | None = None) -> None:
    """Raise the refusal unless ``principal`` may do ``action`` given its relations."""
    refuse_unless(decide(action, principal.roles, relations, resource))


def refuse_unless(decision: Decision, detail: str | None = None) -> None:
    if not decision:
        raise HTTPException(decision.status, detail=reason(decision.code or "FORBIDDEN", detail))
