"""CloudEvents 1.0 as Punte carries them (docs/contracts.md, "Envelope"): the attributes
travel as Kafka headers (binary mode) or ``ce-`` HTTP headers, the ``data`` as the exact
bytes of a UTF-8 JSON object. An event keeps those bytes: the signature covers them, so
they are never serialised again between signing and sending."""
from __future__ import annotations

import json
import unicodedata
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
REPORT_V2 = "ro.punte.report.submitted.v2"
REPORT_V3 = "ro.punte.report.submitted.v3"
OUTCOME = "ro.punte.outcome.v1"
CASE_NOTIFICATION = "ro.punte.case.notification.v1"


def source_of(institution: str) -> str:
    """``ce_source`` of an institution's messages."""
    return f"/institutions/{institution}"


def ingress_topic(institution: str) -> str:
    """The topic an institution writes, and only it."""
    return f"punte.ingress.{institution}"


def delivery_topic(institution: str) -> str:
    """The topic the network answers an institution on, read by it only."""
    return f"punte.delivery.{institution}"


def compact_json(data: dict[str, Any]) -> bytes:
    """UTF-8 JSON without spaces, non-ASCII as is, keys in the order given: the body the
    network's own events carry, and what the gateway's structured ``data`` is signed as."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def rfc3339(when: datetime) -> str:
    """A moment as RFC 3339 in UTC, to the millisecond: ``2026-03-10T07:30:00.250Z``."""
    if when.tzinfo is None:
        raise ValueError("a ce_time needs a time zone")
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def has_control_characters(text: str | None) -> bool:
    """Unicode category Cc (newline, NUL, ESC, …): refused in every signed attribute."""
    return text is not None and any(unicodedata.category(c) == "Cc" for c in text)


@dataclass(frozen=True)
class Event:
    """One CloudEvent with its body as bytes. ``keyid``, ``signature`` and ``sigversion``
    are set by ``InstitutionKey.sign``; an unsigned event has them ``None``."""

    id: str
    source: str
    type: str
    time: str
    body: bytes
    subject: str | None = None
    keyid: str | None = None
    signature: str | None = None
    sigversion: str | None = None

    @staticmethod
    def new(institution: str, type: str, data: dict[str, Any], *, subject: str | None = None,
            id: str | None = None, time: datetime | None = None) -> "Event":
        """A new event of ``institution``: a fresh UUID as ``ce_id`` (unless given), now as
        ``ce_time``, ``data`` as compact UTF-8 JSON."""
        if not isinstance(data, dict):
            raise TypeError("data is a JSON object (a dict)")
        return Event(id=id or str(uuid.uuid4()), source=source_of(institution), type=type,
                     time=rfc3339(time or datetime.now(timezone.utc)), body=compact_json(data), subject=subject)

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def signed(self) -> bool:
        return bool(self.signature and self.keyid)

    def attributes(self) -> dict[str, str]:
        """The attributes by their CloudEvents names (``id``, ``source``, …, ``keyid``)."""
        out = {"specversion": SPECVERSION, "id": self.id, "source": self.source, "type": self.type,
               "time": self.time}
        optional = {"subject": self.subject, "keyid": self.keyid, "signature": self.signature,
                    "sigversion": self.sigversion}
        out |= {k: v for k, v in optional.items() if v}
        return out

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """Kafka record headers, binary content mode: ``ce_<attribute>`` and ``content-type``."""
        headers = [(f"ce_{k}", v.encode("utf-8")) for k, v in self.attributes().items()]
        headers.insert(5, ("content-type", CONTENT_TYPE.encode()))
        return headers

    def without_signature(self) -> "Event":
        return replace(self, keyid=None, signature=None, sigversion=None)
