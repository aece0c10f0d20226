"""When a closed case's retention period is over, what of the child goes with it.

The lead closes a case in referral (ro.punte.case.closed.v1); intake then takes no new
report into it, and when the closed-case period is over erases the case and the identity
versions its reports recorded. A child may have another case still
kept (open, or closed and within its own period): that case needs to know who the child
is, so the child's current (latest) identity version stays while any other case of the
child does; the last case of a child to be erased takes every version with it."""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

OPEN, CLOSED = "open", "closed"


@dataclass(frozen=True)
class IdentityVersion:
    version: int
    report_id: str | None  # None: kept before versions were recorded per report


def identity_versions_to_erase(versions: Sequence[IdentityVersion], case_reports: Collection[str],
                               child_has_another_case: bool) -> list[int]:
    """Which of a child's identity versions go when one of the child's cases is erased."""
    if not child_has_another_case:
        return [v.version for v in versions]
    current = max((v.version for v in versions), default=None)
    return [v.version for v in versions if v.report_id in case_reports and v.version != current]
