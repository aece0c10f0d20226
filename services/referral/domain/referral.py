"""A referral asks one institution to take a case. This first slice knows two states,
requested and accepted; the full FHIR-Task lifecycle grows here."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from contracts.refusals import Refused


class ReferralRefused(Refused):
    """A referral command the lifecycle does not allow."""


@dataclass(frozen=True)
class Referral:
    referral_id: str
    case_id: str
    referrer: str
    to: str
    urgency: str
    state: str = "requested"
    accepted_at: datetime | None = None

    def accept(self, by: str, at: datetime) -> "Referral":
        if by != self.to:
            raise ReferralRefused("NOT_REFERRAL_RECIPIENT", f"only {self.to} may accept")
        if self.state != "requested":
            raise ReferralRefused("ILLEGAL_TRANSITION", f"cannot accept a referral {self.state}")
        return replace(self, state="accepted", accepted_at=at)
