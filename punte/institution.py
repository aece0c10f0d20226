"""An institution's own system as the network sees it: it signs what it sends to its
ingress topic and reads its delivery topic. Used by the demo, the tests and bench/."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from contracts.reference import ingress_topic
from runtime.cloudevents import CloudEvent
from runtime.signing import SigningKey


@dataclass
class InstitutionSystem:
    institution: str
    key: SigningKey
    producer: AIOKafkaProducer

    @property
    def source(self) -> str:
        return f"/institutions/{self.institution}"

    def event(self, event_type: str, data: dict[str, Any], subject: str | None = None) -> CloudEvent:
        return self.key.sign(CloudEvent.new(event_type, self.source, data, subject=subject))

    async def send(self, event: CloudEvent, key: str | None = None) -> None:
        await self.producer.send_and_wait(
            ingress_topic(self.institution), value=event.body(),
            key=(key or event.id).encode(), headers=event.headers(),
        )
