"""CloudEvents 1.0 in Kafka binary content mode: attributes in ``ce_*`` headers, the
``data`` as a JSON body. See docs/contracts.md."""
from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from contracts.refusals import Refused
from runtime import json_bytes
from runtime.control_characters import has_control_characters

# Every id Punte derives from a cause is a UUIDv5 in this namespace (ADR 0023). Never change
# it: ids already sent would stop matching the ids a replay derives.
DERIVED = uuid.uuid5(uuid.NAMESPACE_URL, "https://punte.ro/derived")

# ce_time is optional in CloudEvents; Punte requires it (signatures and the replay window use it).
REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time")
CONTENT_TYPE = "application/json"
# RFC 3339 section 5.6 date-time: a T (or t) between date and time, seconds, any fraction,
# and a zone (Z, z or ±hh:mm). The header schema's ce_time pattern is this one.
RFC_3339 = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")


class EnvelopeError(Refused):
    """The message is not a readable CloudEvent."""


@dataclass(frozen=True)
class CloudEvent:
    id: str
    source: str
    type: str
    time: str
    data: dict[str, Any]
    subject: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def new(
        type: str, source: str, data: dict[str, Any], subject: str | None = None,
        id: str | None = None, time: datetime | None = None,
    ) -> "CloudEvent":
        """A new event; ``id`` is ``derived_id(...)`` for anything a message or a timer
        causes, and random only for what a person's request causes (ADR 0023)."""
        when = (time or datetime.now(timezone.utc)).astimezone(timezone.utc)
        return CloudEvent(
            id=id or str(uuid.uuid4()), source=source, type=type,
            time=when.isoformat().replace("+00:00", "Z"), data=data, subject=subject,
        )

    def body(self) -> bytes:
        return json_bytes.compact(self.data)

    def headers(self) -> list[tuple[str, bytes]]:
        out = [
            ("ce_specversion", b"1.0"),
            ("ce_id", self.id.encode()),
            ("ce_source", self.source.encode()),
            ("ce_type", self.type.encode()),
            ("ce_time", self.time.encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        if self.subject:
            out.append(("ce_subject", self.subject.encode()))
        out.extend((f"ce_{k}", v.encode()) for k, v in self.extensions.items())
        return out


def derived_id(cause: str, *step: str) -> str:
    """The id of what ``cause`` gives rise to at ``step``: a pure function of both, so a
    message processed again (a replay, a restore from backup, a batch applied again after a
    crash) gives rise to the same ids, and every next inbox drops the repeats (ADR 0023).

    ``cause`` is the causing message's inbox key (its sender or source and event id, or its
    position when it has none), a timer's key, or another derived id; ``step`` says which of
    its effects (an event type, and the recipient where one cause tells several). Parts are
    encoded as a JSON array, so no choice of ids can make two different causes meet."""
    return str(uuid.uuid5(DERIVED, json.dumps([cause, *step], ensure_ascii=False, separators=(",", ":"))))


def header_map(headers: Any) -> dict[str, str]:
    """Kafka headers as a dict of text; later duplicates win, undecodable bytes are kept
    readable so they can be reported."""
    out: dict[str, str] = {}
    for key, value in headers or ():
        # NUL cannot be stored in PostgreSQL text; it is replaced, and such attributes are
        # refused by decode() anyway.
        out[key] = (value or b"").decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    return out


def parse_time(text: str) -> datetime:
    """An RFC 3339 date-time (ValueError otherwise), as an aware datetime."""
    if not RFC_3339.fullmatch(text):
        raise ValueError("not an RFC 3339 date-time")
    return datetime.fromisoformat(text.upper().replace("Z", "+00:00"))  # also checks the ranges


def repeated_attributes(names: Iterable[str]) -> list[str]:
    """The CloudEvents attributes (``ce_*``, or ``ce-*`` over HTTP) and content-type given
    more than once. Refused rather than read: which copy counts would depend on the reader
    (the last one here, the first one in some clients), and the audit trail keeps them all."""
    listed = ["content-type" if n.lower() == "content-type" else n for n in names]
    if len(set(listed)) == len(listed):  # the usual case, without counting (every message is read so)
        return []
    counts = Counter(listed)
    return sorted(n for n, c in counts.items()
                  if c > 1 and (n.startswith(("ce_", "ce-")) or n == "content-type"))


def is_json(content_type: str | None) -> bool:
    """Whether a content-type names JSON: ``application/json``, in any case, with or without
    parameters (``; charset=utf-8``). The body is read as UTF-8 JSON either way."""
    return (content_type or "").split(";")[0].strip().lower() == CONTENT_TYPE


def decode(headers: Any, body: bytes | None) -> CloudEvent:
    """Read a binary-mode CloudEvent, or raise EnvelopeError with a rejection code."""
    repeated = repeated_attributes(name for name, _ in headers or ())
    if repeated:
        raise EnvelopeError("MALFORMED_ENVELOPE", f"headers given more than once: {', '.join(repeated)}")
    h = header_map(headers)
    missing = [k for k in REQUIRED if not h.get(k)]
    if missing:
        raise EnvelopeError("MALFORMED_ENVELOPE", f"missing headers: {', '.join(missing)}")
    unreadable = [k for k in REQUIRED if "\ufffd" in h[k] or not h[k].isprintable()]
    # The subject is signed too: a newline in it could shift fields of a v1 signing input.
    subject = h.get("ce_subject", "")
    if "\ufffd" in subject or has_control_characters(subject):
        unreadable.append("ce_subject")
    if unreadable:
        raise EnvelopeError("MALFORMED_ENVELOPE", f"unreadable characters in {', '.join(unreadable)}")
    if not is_json(h.get("content-type")):
        raise EnvelopeError("MALFORMED_ENVELOPE", "content-type must be application/json")
    if h["ce_specversion"] != "1.0":
        raise EnvelopeError("MALFORMED_ENVELOPE", "unsupported ce_specversion (1.0 is)")
    time = h.get("ce_time", "")
    try:
        parse_time(time)
    except ValueError:
        raise EnvelopeError("MALFORMED_ENVELOPE", "ce_time is not RFC 3339") from None
    # Details say where, never what: they travel in outcomes and dead letters.
    try:
        data = json.loads((body or b"").decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise EnvelopeError("MALFORMED_PAYLOAD", f"body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise EnvelopeError("MALFORMED_PAYLOAD", f"body is not JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(data, dict):
        raise EnvelopeError("MALFORMED_PAYLOAD", "body must be a JSON object")
    extensions = {
        k[3:]: v for k, v in h.items()
        if k.startswith("ce_") and k not in REQUIRED and k != "ce_subject"
    }
    return CloudEvent(
        id=h["ce_id"], source=h["ce_source"], type=h["ce_type"], time=time, data=data,
        subject=h.get("ce_subject") or None, extensions=extensions,
    )
