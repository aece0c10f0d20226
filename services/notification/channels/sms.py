"""SMS: the port a gateway plugs into, and the embedded default that writes to a file.

Production plugs in a real gateway behind ``SmsProvider``; the embedded default appends
one JSON line per SMS, so a pilot or a test can see exactly what would have gone out.
The text comes from ``domain.templates.sms_text`` (Romanian, plain ASCII, one segment).

Every SMS carries an idempotency key derived from the notice it tells (ADR 0023): the same
SMS sent again (a crash between the gateway's answer and our record of it) carries the same
key, so a gateway that takes one (a client reference or an Idempotency-Key header) sends it
once."""
from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, runtime_checkable

from services.notification.channels.email import ChannelError
from services.notification.domain.recipients import PHONE


@runtime_checkable
class SmsProvider(Protocol):
    async def send(self, phone: str, text: str, *, idempotency_key: str | None = None) -> str:
        """Hand one SMS to the gateway, with ``idempotency_key`` where the gateway takes
        one; the gateway's id for it, or ChannelError."""
        ...


def check_phone(phone: str) -> str:
    if not PHONE.fullmatch(phone):
        raise ChannelError("INVALID_PHONE", "the phone number must be E.164 (+40…) or 0 and 9 digits")
    return phone


class FileSmsProvider:
    """Appends {"to", "text", "id", "idempotency_key", "at"} as one JSON line per SMS to
    ``path``."""

    def __init__(self, path: str | Path, clock=lambda: datetime.now(timezone.utc)) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = asyncio.Lock()

    async def send(self, phone: str, text: str, *, idempotency_key: str | None = None) -> str:
        check_phone(phone)
        if not text:
            raise ChannelError("INVALID_MESSAGE", "an SMS needs a text")
        sms_id = str(uuid.uuid4())
        line = json.dumps({"to": phone, "text": text, "id": sms_id, "idempotency_key": idempotency_key,
                           "at": self._clock().isoformat()}, ensure_ascii=False) + "\n"
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, line)
            except OSError as exc:
                raise ChannelError("SMS_UNAVAILABLE", f"{self.path}: {exc.strerror or exc}",
                                   transient=True) from exc
        return sms_id

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
