"""The person's export (GDPR art. 15) put together from the four services: intake's part
(the identity, the child's cases and reports) first, then referral's, notification's and
audit's parts of every one of the child's cases that the officer's institution leads. A case
another institution leads is named with its lead, whose officer answers for it (each lead
is the controller of its cases). Every part is the service's own answer and access event."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import httpx

SERVICES = ("intake", "referral", "notification", "audit")


class PartRefused(RuntimeError):
    """A service refused its part (the refusal's code and message are in the text)."""


async def _part(client: httpx.AsyncClient, service: str, case_id: str, purpose: str) -> dict[str, Any]:
    answer = await client.get(f"/privacy/cases/{case_id}/export", params={"purpose": purpose})
    if answer.status_code != 200:
        raise PartRefused(f"{service}: {answer.status_code} {answer.text}")
    return answer.json()


async def collect_export(clients: Mapping[str, httpx.AsyncClient], case_id: str, purpose: str,
                         institution: str) -> dict[str, Any]:
    """One JSON document; ``clients`` are signed in as the officer of ``institution``."""
    intake = await _part(clients["intake"], "intake", case_id, purpose)
    ours = [c["case_id"] for c in intake["cases"] if c["lead"] == institution]
    parts: dict[str, dict[str, Any]] = {}
    for case in ours:
        parts[case] = {service: await _part(clients[service], service, case, purpose)
                       for service in SERVICES[1:]}
    return {
        "generated_at": datetime.now(timezone.utc).isoformat(), "case_id": case_id, "purpose": purpose,
        "requested_by": institution, "child_ref": intake["child_ref"], "intake": intake, "cases": parts,
        "led_by_others": [{"case_id": c["case_id"], "lead": c["lead"]}
                          for c in intake["cases"] if c["lead"] != institution],
    }
