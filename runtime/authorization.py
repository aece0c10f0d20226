"""The HTTP side of contracts.access: a FastAPI dependency that admits a token whose roles
could do an operation's action, and the check of the asker's relations to a resource.
Which relations hold is the endpoint's to find out (it reads the resource); the rule it
then asks is contracts.access.decide, the same for every service, consumer and page."""
from __future__ import annotations

from collections.abc import Iterable

from fastapi import Depends, HTTPException

from contracts.access import Denied, Relation, decide, require
from contracts.refusals import reason
from runtime.tokens import Principal, authenticated


def permit(action: str):
    """FastAPI dependency: a valid token with a role that some grant of ``action`` names
    (FORBIDDEN otherwise); relations are for the endpoint to ``check``."""

    async def dependency(principal: Principal = Depends(authenticated)) -> Principal:
        check(action, principal, Relation)  # every relation: only the roles are asked here
        return principal

    return dependency


def check(action: str, principal: Principal, relations: Iterable[Relation],
          resource: str | None = None) -> None:
    """The refusal, as an HTTP error, unless ``principal`` may do ``action`` given its relations."""
    try:
        require(decide(action, principal.roles, relations, resource))
    except Denied as denied:
        raise http_refusal(denied) from None


def http_refusal(denied: Denied) -> HTTPException:
    return HTTPException(denied.status, detail=reason(denied.code, denied.detail or None))
