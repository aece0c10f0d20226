"""What the SDK raises. Every refusal carries the network's code (docs/contracts.md,
"Rejection catalogue") and, when the network gave them, its Romanian and English messages,
so staff can read them as they are."""
from __future__ import annotations

from typing import Any


class PunteError(Exception):
    """Anything the SDK refuses or the network answers with an error."""


class Refused(PunteError):
    """A refusal with a code of the catalogue (``MISSING_SIGNATURE``, ``SCHEMA_VIOLATION``, …)."""

    # Where a refused Kafka record is: (topic, partition, offset); None elsewhere.
    position: tuple[str, int, int] | None = None

    def __init__(self, code: str, message_en: str, message_ro: str | None = None) -> None:
        super().__init__(f"{code}: {message_en}")
        self.code = code
        self.message_en = message_en
        self.message_ro = message_ro if message_ro is not None else message_en

    @classmethod
    def from_reason(cls, reason: dict[str, Any], **extra: Any) -> "Refused":
        """From a ``reason`` as the network writes it: ``{"code", "message_ro", "message_en"}``."""
        return cls(str(reason.get("code")), str(reason.get("message_en") or reason.get("code")),
                   str(reason.get("message_ro") or reason.get("message_en") or reason.get("code")), **extra)


class SignatureRefused(Refused):
    """A message whose signature must not be trusted: ``MISSING_SIGNATURE``, ``UNKNOWN_KEY``
    or ``BAD_SIGNATURE``, as the network answers for the same message."""


class EnvelopeRefused(Refused):
    """A record that is not a readable CloudEvent: ``MALFORMED_ENVELOPE`` or ``MALFORMED_PAYLOAD``."""


class Rejected(Refused):
    """The network answered a report (or another message) with a rejected outcome."""

    def __init__(self, code: str, message_en: str, message_ro: str | None = None,
                 outcome: "Any" = None) -> None:
        super().__init__(code, message_en, message_ro)
        self.outcome = outcome


class GatewayRefused(Refused):
    """The HTTP gateway refused the request before any outcome (400, 401, 403, 413, 429, …),
    in the network's refusal shape ``{"detail": {"code", "message_ro", "message_en"}}``."""

    def __init__(self, code: str, message_en: str, message_ro: str | None = None, status: int = 0,
                 retry_after: str | None = None) -> None:
        super().__init__(code, message_en, message_ro)
        self.status = status
        self.retry_after = retry_after


class TokenRefused(PunteError):
    """The identity provider refused the client credentials (an OAuth 2.0 error, RFC 6749 5.2)."""

    def __init__(self, error: str, description: str | None, status: int) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status


class NoAnswerYet(PunteError):
    """The gateway has not answered within the time given; poll ``location`` later."""

    def __init__(self, location: str) -> None:
        super().__init__(f"no outcome yet; poll {location}")
        self.location = location


class SendFailed(PunteError):
    """The broker did not take the message (the producer's delivery report was an error)."""
