"""An institution's own system as the network sees it: it signs what it sends to its
ingress topic and reads its delivery topic; it seals the identifying parts of each report
to intake's published keys (report v3). Used by the demo, the tests and bench/."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from joserfc import jwe
from joserfc.jwk import ECKey

from contracts.events import EventType
from contracts.reference import ingress_topic
from runtime.cloudevents import CloudEvent
from runtime.signing import SigningKey

JWE_ALG = "ECDH-ES+A256KW"
JWE_ENC = "A256GCM"
# What a v2 report keeps in clear in v3: what routing needs and yes/no facts, nothing that
# names anyone or tells the story.
CLEAR_FIELDS = ("reporter", "channel", "place_of_occurrence", "immediate_danger", "already_informed",
                "observation_sheet", "occurred_at")
WHERE_THE_CHILD_LIVES = ("uat_siruta", "county")


def fetch_intake_keys(intake_url: str, timeout: float = 10) -> dict[str, Any]:
    """Intake's public encryption keys, from its public endpoint, as any institution gets them."""
    response = httpx.get(f"{intake_url.rstrip('/')}/.well-known/jwks.json", timeout=timeout)
    response.raise_for_status()
    return response.json()


def seal(plaintext: dict[str, Any], jwks: dict[str, Any]) -> str:
    """``plaintext`` as a JWE compact serialization to the first encryption key of ``jwks``
    (intake publishes its current key first)."""
    jwk = next(k for k in jwks["keys"] if k.get("use") == "enc" and k.get("alg") == JWE_ALG)
    key = ECKey.import_key({k: v for k, v in jwk.items() if k != "d"})  # the public half is enough
    protected = {"alg": JWE_ALG, "enc": JWE_ENC, "kid": jwk["kid"]}
    return jwe.encrypt_compact(protected, json.dumps(plaintext, ensure_ascii=False).encode(), key)


def sealed_report(report: dict[str, Any], event_id: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """A report written as v2 (ro.punte.report.submitted.v2), sent as v3: the child's
    identity, the household, the description and the indicators sealed to intake, for the
    report ``event_id`` of the reporter's institution only."""
    child = report["child"]
    clear = {k: report[k] for k in CLEAR_FIELDS if k in report}
    clear["child"] = {k: child[k] for k in WHERE_THE_CHILD_LIVES if k in child}
    clear["risks"] = [{"category": r["category"]} for r in report["risks"]]
    plaintext: dict[str, Any] = {
        "report": {"id": event_id, "institution": report["reporter"]["institution"]},
        "child": {k: v for k, v in child.items() if k not in WHERE_THE_CHILD_LIVES},
        "description": report["description"],
    }
    if "household" in report:
        plaintext["household"] = report["household"]
    indicators = {r["category"]: r["indicators"] for r in report["risks"] if r.get("indicators")}
    if indicators:
        plaintext["indicators"] = indicators
    if report.get("notes"):
        plaintext["notes"] = report["notes"]
    clear["sealed"] = seal(plaintext, jwks)
    return clear


@dataclass
class InstitutionSystem:
    institution: str
    key: SigningKey
    producer: AIOKafkaProducer
    intake_keys: dict[str, Any] | None = None  # intake's JWKS (fetch_intake_keys)

    @property
    def source(self) -> str:
        return f"/institutions/{self.institution}"

    def event(self, event_type: str, data: dict[str, Any], subject: str | None = None) -> CloudEvent:
        return self.key.sign(CloudEvent.new(event_type, self.source, data, subject=subject))

    def report(self, report: dict[str, Any]) -> CloudEvent:
        """A report (written as v2) sealed and signed as v3, ready to send."""
        if self.intake_keys is None:
            raise RuntimeError(f"{self.institution} has not fetched intake's keys (fetch_intake_keys)")
        event_id = str(uuid.uuid4())
        data = sealed_report(report, event_id, self.intake_keys)
        return self.key.sign(CloudEvent.new(EventType.REPORT_SUBMITTED_V3.value, self.source, data, id=event_id))

    async def send(self, event: CloudEvent, key: str | None = None) -> None:
        await self.producer.send_and_wait(
            ingress_topic(self.institution), value=event.body(),
            key=(key or event.id).encode(), headers=event.headers(),
        )
