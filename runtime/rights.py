"""The person's rights (GDPR art. 15-18) over HTTP: an export, a rectification or a
restriction needs a purpose stated for that right, a code of access-purposes.yaml whose
`right` names the operation's action (subject.export, subject.rectify, subject.restrict).
The purpose then travels as any other (runtime.access.record_access); the case's lead is
told of it even when its own officer acts (services/notification/domain/notices.py)."""
from __future__ import annotations

from fastapi import HTTPException, Request

from contracts.refusals import reason
from contracts.rights import rights_purposes, serves_a_right
from runtime.access import Stated, stated_purpose

__all__ = ["rights_purpose", "rights_purposes", "serves_a_right"]


def rights_purpose(request: Request, action: str) -> Stated:
    """The stated purpose of a rights operation; 422 PURPOSE_REQUIRED when none is stated or
    it serves another right, UNKNOWN_PURPOSE when it is no code of the list."""
    stated = stated_purpose(request, _which(action))
    if rights_purposes().get(stated.code) != action:
        raise HTTPException(422, detail=reason("PURPOSE_REQUIRED", _which(action)))
    return stated


def _which(action: str) -> str:
    codes = sorted(code for code, right in rights_purposes().items() if right == action)
    return f"{action} needs purpose {' or '.join(codes)}"
