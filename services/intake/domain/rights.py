"""The person's rights over intake's records, as pure rules (docs/decisions/0019).

Rectification (GDPR art. 16) gives corrected identity fields; the result is a whole new
identity version (the current one with the corrections), never an overwrite. The child's
pseudonym (child_ref) does not change, even when the CNP itself is corrected: it is the key
every service, the trail and the household links already hold, so changing it would cut
the child's history in two. A corrected CNP instead gets an alias: the pseudonym the new
CNP would give points to the child's existing one, so a later report carrying the
corrected CNP joins the same child.

Restriction (art. 18): a restricted case takes no new report; one about the same child
opens a new case, processed as any other, since a report of a child at risk is a legal
duty and the child's protection (art. 18(2): the vital interests of a person, an important
public interest) may not wait for a dispute about the old case's data."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from services.intake.domain import cnp as cnp_rules

# What a rectification may correct: the identity fields the vault keeps (handlers._identity).
CORRECTABLE = frozenset({"cnp", "given_name", "family_name", "birth_date", "estimated_age_years",
                         "sex", "uat_siruta", "county", "address"})


class InvalidCorrection(ValueError):
    """A correction names a field that is not the identity's, or gives a CNP that is not valid."""


def corrected(current: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The identity after the corrections: the current version with ``changes`` applied,
    the derived birth year kept in step with a corrected birth date."""
    unknown = set(changes) - CORRECTABLE
    if unknown:
        raise InvalidCorrection(f"not identity fields: {', '.join(sorted(unknown))}")
    if not changes:
        raise InvalidCorrection("nothing to correct")
    new_cnp = changes.get("cnp")
    if new_cnp is not None and not cnp_rules.is_valid(str(new_cnp)):
        raise InvalidCorrection("cnp is not a valid CNP")
    identity = dict(current or {})
    identity.update(changes)
    birth = identity.get("birth_date")
    if "birth_date" in changes and birth:
        try:
            identity["birth_year"] = date.fromisoformat(str(birth)).year
        except ValueError:
            raise InvalidCorrection("birth_date is not a date (YYYY-MM-DD)") from None
    return identity


def cnp_corrected(current: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> str | None:
    """The new CNP when the correction changes it, else None."""
    new = changes.get("cnp")
    if new and new != (current or {}).get("cnp"):
        return str(new)
    return None


def joinable(open_cases: Iterable[Any], restricted: Iterable[str]) -> list[Any]:
    """The child's open cases a new report may join: none that is restricted."""
    held = set(restricted)
    return [c for c in open_cases if c.case_id not in held]
