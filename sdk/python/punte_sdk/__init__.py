"""Punte's Python SDK: connect an institution's system to the network.

Build a report, seal it (v3) to intake's key, sign it with the institution's key, send it
over Kafka (``punte_sdk.kafka``, the ``kafka`` extra) or the HTTP gateway (``Gateway``),
and verify and read what the network delivers. It follows docs/contracts.md and the shared
test vectors (contracts/test-vectors/), and imports nothing of the network's own code."""
from __future__ import annotations

from punte_sdk.deliveries import Delivery, Outcome, Reason, event_of, read_delivery
from punte_sdk.errors import (
    EnvelopeRefused,
    GatewayRefused,
    NoAnswerYet,
    PunteError,
    Refused,
    Rejected,
    SendFailed,
    SignatureRefused,
    TokenRefused,
)
from punte_sdk.events import (
    CASE_NOTIFICATION,
    OUTCOME,
    REPORT_V2,
    REPORT_V3,
    Event,
    compact_json,
    delivery_topic,
    ingress_topic,
    source_of,
)
from punte_sdk.gateway import Gateway, basic_authorization, binary_request, signed_bytes, structured_request
from punte_sdk.sealing import clear_report, fetch_intake_keys, seal, sealed_report, split_report
from punte_sdk.signing import InstitutionKey, VerificationKeys, signing_input

__version__ = "0.1.0"

__all__ = [
    "CASE_NOTIFICATION", "OUTCOME", "REPORT_V2", "REPORT_V3",
    "Delivery", "EnvelopeRefused", "Event", "Gateway", "GatewayRefused", "InstitutionKey", "NoAnswerYet",
    "Outcome", "PunteError", "Reason", "Refused", "Rejected", "SendFailed", "SignatureRefused", "TokenRefused",
    "VerificationKeys", "basic_authorization", "binary_request", "clear_report", "compact_json",
    "delivery_topic", "event_of", "fetch_intake_keys", "ingress_topic", "read_delivery", "seal",
    "sealed_report", "signed_bytes", "signing_input", "source_of", "split_report", "structured_request",
]
