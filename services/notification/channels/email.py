"""E-mail: a rendered notice sent over SMTP (aiosmtplib), one message per recipient.

Only what ``domain.templates.render`` produced travels: the subject and a UTF-8 plain-text
body. STARTTLS is on by default because even a summary says how urgent a case is and
what kind of risk it concerns; turn it off only for a relay on the same host."""
from __future__ import annotations

import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import aiosmtplib


class ChannelError(Exception):
    """A notice could not be handed to a channel. ``transient`` says whether trying again
    later may succeed (server down, 4xx) or not (address refused, 5xx, bad configuration)."""

    def __init__(self, code: str, detail: str, *, transient: bool = False) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.transient = transient


class RenderedMessage(Protocol):
    subject: str
    text: str


def _address(value: str, what: str, display_name: str = "") -> Address:
    if not value or any(c in value for c in "\r\n,;<>\"") or value.count("@") != 1:
        raise ChannelError("INVALID_ADDRESS", f"{what} must be one plain e-mail address")
    local, _, domain = value.partition("@")
    if not local or not domain or any(c.isspace() for c in value):
        raise ChannelError("INVALID_ADDRESS", f"{what} must be one plain e-mail address")
    try:
        return Address(display_name=display_name, addr_spec=value)
    except (ValueError, IndexError) as exc:
        raise ChannelError("INVALID_ADDRESS", f"{what}: {exc}") from None


def _from_smtp(exc: Exception) -> ChannelError:
    """aiosmtplib's errors as channel errors; the server's own words go in the detail."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        return ChannelError("SMTP_RECIPIENT_REFUSED", detail, transient=all(400 <= c < 500 for c in codes))
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return ChannelError("SMTP_AUTH_FAILED", f"{exc.code} {exc.message}")
    if isinstance(exc, (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError,
                        aiosmtplib.SMTPServerDisconnected, OSError)):
        return ChannelError("SMTP_UNAVAILABLE", str(exc) or type(exc).__name__, transient=True)
    if isinstance(exc, aiosmtplib.SMTPNotSupported) or (
            type(exc) is aiosmtplib.SMTPException and "not supported" in str(exc)):
        # e.g. STARTTLS required but not offered (a bare SMTPException in aiosmtplib 5):
        # configuration, not bad luck, so not worth retrying.
        return ChannelError("SMTP_NOT_SUPPORTED", str(exc))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return ChannelError("SMTP_REJECTED", f"{exc.code} {exc.message}", transient=400 <= exc.code < 500)
    return ChannelError("SMTP_FAILED", str(exc) or type(exc).__name__, transient=True)


class SmtpSender:
    def __init__(self, host: str, port: int, sender: str, *, sender_name: str = "Punte",
                 starttls: bool = True, username: str | None = None, password: str | None = None,
                 timeout: float = 30.0, tls_context: ssl.SSLContext | None = None) -> None:
        if username is not None and not starttls:
            raise ValueError("refusing to send an SMTP password without STARTTLS")
        self.host, self.port = host, port
        self.sender = _address(sender, "the sender", sender_name)
        self.starttls, self.username, self.password = starttls, username, password
        self.timeout, self.tls_context = timeout, tls_context

    def message(self, to: str, rendered: RenderedMessage, message_id: str | None = None) -> EmailMessage:
        """The message as it goes on the wire (without sending it). ``message_id``: the
        notice's idempotency key (ADR 0023), so the same notice sent again has the same
        Message-ID (RFC 5322) and mail systems and clients can drop the repeat; a fresh
        one when None."""
        recipient = _address(to, "the recipient")
        msg = EmailMessage()
        try:
            msg["Subject"] = rendered.subject
        except ValueError as exc:  # a line break in a header: never pass it on
            raise ChannelError("INVALID_MESSAGE", f"subject: {exc}") from None
        msg["From"] = self.sender
        msg["To"] = recipient
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = f"<{message_id}@{self.sender.domain}>" if message_id else make_msgid(domain=self.sender.domain)
        # RFC 3834: no out-of-office replies or loops back to an unattended address.
        msg["Auto-Submitted"] = "auto-generated"
        # Quoted-printable: 7-bit safe on any relay, and the Romanian stays readable raw.
        msg.set_content(rendered.text, charset="utf-8", cte="quoted-printable")
        msg["Content-Language"] = "ro, en"  # after set_content, which clears Content-* headers
        return msg

    async def send(self, to: str, rendered: RenderedMessage, message_id: str | None = None) -> str:
        """Send one notice; the Message-ID it went with, or ChannelError."""
        msg = self.message(to, rendered, message_id)
        try:
            await aiosmtplib.send(
                msg, hostname=self.host, port=self.port, start_tls=self.starttls,
                username=self.username, password=self.password, timeout=self.timeout,
                tls_context=self.tls_context,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _from_smtp(exc) from exc
        return str(msg["Message-ID"])
