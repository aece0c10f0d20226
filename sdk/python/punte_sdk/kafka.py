"""Kafka (confluent-kafka, librdkafka; ``pip install punte-sdk[kafka]``): send signed
events to the institution's ingress topic and read its delivery topic. ``config`` is
librdkafka's configuration as the operator gives it (``bootstrap.servers``, and in
production ``security.protocol``, ``sasl.*``, ``ssl.ca.location``)."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from punte_sdk.deliveries import Delivery, Outcome, read_delivery
from punte_sdk.errors import PunteError, Refused, SendFailed
from punte_sdk.events import Event, delivery_topic, ingress_topic, source_of
from punte_sdk.signing import VerificationKeys

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
except ImportError as missing:  # pragma: no cover: the extra is not installed
    raise ImportError("punte_sdk.kafka needs confluent-kafka: pip install 'punte-sdk[kafka]'") from missing

# Every write acknowledged by all in-sync replicas, without duplicates from the producer's own
# retries. The embedded Tansu broker (`punte up`) does not do idempotence: there, pass
# {"enable.idempotence": False}.
PRODUCER_DEFAULTS: dict[str, Any] = {"acks": "all", "enable.idempotence": True}
# A new group starts at the beginning of the topic, so no answer sent before it joined is missed.
CONSUMER_DEFAULTS: dict[str, Any] = {"auto.offset.reset": "earliest", "enable.auto.commit": False}


class Sender:
    """Sends an institution's signed events to ``punte.ingress.<institution>``, in binary
    mode (attributes as headers), keyed by ``ce_id`` (a subject's events: pass ``key``)."""

    def __init__(self, institution: str, config: dict[str, Any]) -> None:
        self.institution = institution
        self.topic = ingress_topic(institution)
        self._producer = Producer(PRODUCER_DEFAULTS | config)

    def send(self, event: Event, *, key: str | None = None, timeout: float = 30) -> tuple[int, int]:
        """Send one signed event and wait until the broker has it: (partition, offset)."""
        if not event.signed:
            raise ValueError("sign the event first (InstitutionKey.sign)")
        if event.source != source_of(self.institution):
            raise ValueError(f"the event's source is not {source_of(self.institution)}")
        result: list[Message] = []
        failure: list[KafkaError] = []

        def delivered(error: KafkaError | None, message: Message) -> None:
            (failure.append(error) if error is not None else result.append(message))

        self._producer.produce(self.topic, value=event.body, key=(key or event.id).encode("utf-8"),
                               headers=event.kafka_headers(), on_delivery=delivered)
        deadline = time.monotonic() + timeout
        while not (result or failure):
            if time.monotonic() > deadline:
                raise SendFailed(f"no acknowledgement from the broker within {timeout} s")
            self._producer.poll(0.1)
        if failure:
            raise SendFailed(str(failure[0]))
        message = result[0]
        return message.partition() or 0, message.offset() or 0

    def close(self, timeout: float = 30) -> None:
        self._producer.flush(timeout)

    def __enter__(self) -> "Sender":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class DeliveryReader:
    """Reads ``punte.delivery.<institution>`` in a consumer group of the institution
    (``<institution>.<anything>``: the broker's ACLs allow that prefix), verifying each
    record with the network's keys. Offsets are committed when you call ``commit``, once
    what you read is safely handled (at least once: drop repeats by ``Delivery.id``)."""

    def __init__(self, institution: str, network_keys: VerificationKeys, config: dict[str, Any],
                 group_id: str | None = None) -> None:
        group = group_id or f"{institution}.punte-sdk"
        if not group.startswith(f"{institution}."):
            raise ValueError(f"the group id must start with {institution}.")
        self.institution = institution
        self.network_keys = network_keys
        self._consumer = Consumer(CONSUMER_DEFAULTS | config | {"group.id": group})
        # Records wait_for skipped because they must not be trusted: (code, position).
        self.refused: list[tuple[str, tuple[str, int, int] | None]] = []
        self._consumer.subscribe([delivery_topic(institution)])

    def poll(self, timeout: float = 1.0) -> Delivery | None:
        """The next verified delivery, or None when none came within ``timeout``. A record
        that must not be trusted raises Refused (its code; ``position`` says where it is):
        log it and go on polling."""
        message = self._consumer.poll(timeout)
        if message is None:
            return None
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return None
            raise PunteError(f"reading {delivery_topic(self.institution)}: {error}")
        try:
            return read_delivery(self.network_keys, message.headers(), message.value())
        except Refused as refused:
            refused.position = (message.topic(), message.partition(), message.offset())
            raise

    def deliveries(self, timeout: float) -> Iterator[Delivery]:
        """Verified deliveries until none came for ``timeout`` seconds (untrusted ones raise)."""
        while (delivery := self.poll(timeout)) is not None:
            yield delivery

    def wait_for(self, wanted: Callable[[Delivery], bool], timeout: float = 60) -> Delivery:
        """The first verified delivery ``wanted`` accepts, skipping the others, and records
        that must not be trusted (kept in ``refused``: code and position). TimeoutError when
        none came in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                delivery = self.poll(min(1.0, max(0.0, deadline - time.monotonic())))
            except Refused as refused:
                self.refused.append((refused.code, refused.position))
                continue
            if delivery is not None and wanted(delivery):
                return delivery
        raise TimeoutError(f"no such delivery on {delivery_topic(self.institution)} within {timeout} s")

    def wait_for_outcome(self, event_id: str, timeout: float = 60) -> Outcome:
        """The outcome answering ``event_id``, accepted or rejected (``raise_if_rejected``)."""
        return self.wait_for(lambda d: d.is_outcome and d.data.get("subject_id") == event_id, timeout).outcome()

    def commit(self) -> None:
        """Commit what was read so far (synchronously); nothing read yet: nothing to do."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as failed:
            if failed.args[0].code() != KafkaError._NO_OFFSET:
                raise

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> "DeliveryReader":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
