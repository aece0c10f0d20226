"""Who must know: the lead institution and those informed, from the routing table
(contracts/reference/routing.yaml) by category, resolved by the child's jurisdiction."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.intake.domain.errors import ReportRejected


@dataclass(frozen=True)
class Routing:
    lead: str
    informed: tuple[str, ...]


def route(
    categories: Iterable[str], uat_siruta: int, county: str, table: Mapping[str, Any],
    local_authority: Callable[[int], str | None], county_institution: Callable[[str, str], str],
) -> Routing:
    rules = [table["categories"][c] for c in categories]
    precedence: list[str] = table["precedence"]
    lead_token = min((r["lead"] for r in rules), key=precedence.index)
    tokens = [t for r in rules for t in [r["lead"], *r.get("informed", [])]]

    def resolve(token: str) -> str:
        if table["roles"][token] == "local":
            found = local_authority(uat_siruta)
            if found is None:
                raise ReportRejected("UNKNOWN_UAT", f"no local authority for SIRUTA {uat_siruta}")
            return found
        return county_institution(token, county)

    lead = resolve(lead_token)
    informed: list[str] = []
    for token in tokens:
        institution = resolve(token)
        if institution != lead and institution not in informed:
            informed.append(institution)
    return Routing(lead, tuple(informed))
