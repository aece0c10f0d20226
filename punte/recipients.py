"""The embedded default's recipients: for every institution a team mailbox, a case manager
on call around the clock, a supervisor and, at each DGASPC, a county coordinator, all with
synthetic contact points (``example.invalid`` addresses, +40 700 000 … numbers that reach
nobody). Institutions change this file (``.punte/recipients.yaml``) to their own people."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from contracts.reference import Institution


def demo_recipients(institutions: Iterable[Institution], *, digest_minutes: int = 60,
                    ack_minutes: float = 10, quiet_hours: tuple[str, str] | None = ("22:00", "07:00"),
                    webhooks: dict[str, str] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"timezone": "Europe/Bucharest", "institutions": {}, "people": {}}
    for n, inst in enumerate(institutions, start=1):
        domain = f"{inst.id}.example.invalid"
        case_manager, supervisor = f"cm.{inst.id}", f"sup.{inst.id}"
        people = {
            case_manager: {"institution": inst.id, "role": "case-manager", "email": f"caz@{domain}",
                           "phone": f"+40700{n:03d}001", "channels": ["email"]},
            supervisor: {"institution": inst.id, "role": "supervisor", "email": f"sef@{domain}",
                         "phone": f"+40700{n:03d}002", "channels": ["email", "sms"]},
        }
        entry: dict[str, Any] = {
            "channels": ["email", "sms"], "team_email": f"echipa@{domain}",
            "digest_minutes": digest_minutes, "ack_minutes": ack_minutes, "resends": 1,
            "supervisors": [supervisor],
            "on_call": [{"person": case_manager, "from": "2026-01-01T00:00:00+02:00",
                         "to": "2031-01-01T00:00:00+02:00"}],
        }
        if inst.kind == "DGASPC":
            coordinator = f"coord.{inst.id}"
            people[coordinator] = {"institution": inst.id, "role": "coordinator", "email": f"coordonator@{domain}",
                                   "phone": f"+40700{n:03d}003", "channels": ["email", "sms"]}
            entry["coordinators"] = [coordinator]
        if quiet_hours:
            entry["quiet_hours"] = {"start": quiet_hours[0], "end": quiet_hours[1]}
        if webhooks and inst.id in webhooks:
            entry["webhook"] = webhooks[inst.id]
        config["institutions"][inst.id] = entry
        config["people"].update(people)
    return config


def write(path: Path, config: dict[str, Any]) -> None:
    header = ("# Who Punte tells, and how: see docs/notifications.md. Synthetic contact points;\n"
              "# replace them with your institution's own.\n")
    path.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
