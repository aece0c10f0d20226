"""E-mail: a rendered notice sent over SMTP (aiosmtplib), one message per recipient, the
messages of a dispatch pass over connections reused within it.

Only what ``domain.templates.render`` produced travels: the subject and a UTF-8 plain-text
body. STARTTLS is on by default because even a summary says how urgent a case is and
what kind of risk it concerns; turn it off only for a relay on the same host."""
from __future__ import annotations

import ssl
from email.charset import QP, Charset
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, make_msgid
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


# Quoted-printable for headers and body: 7-bit safe on any relay, and the Romanian stays
# readable raw.
UTF8_QP = Charset("utf-8")
UTF8_QP.header_encoding = UTF8_QP.body_encoding = QP


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

    def message(self, to: str, rendered: RenderedMessage, message_id: str | None = None) -> Message:
        """The message as it goes on the wire (without sending it). ``message_id``: the
        notice's idempotency key (ADR 0023), so the same notice sent again has the same
        Message-ID (RFC 5322) and mail systems and clients can drop the repeat; a fresh
        one when None.

        Built with the email package's compat32 classes, whose headers are set as given:
        EmailMessage parses every header it is given and took about a millisecond per
        message, most of notification's time under load (bench/README.md)."""
        recipient = _address(to, "the recipient")
        if any(c in rendered.subject for c in "\r\n"):  # a line break in a header: never pass it on
            raise ChannelError("INVALID_MESSAGE", "subject: a header must not hold a line break")
        msg = MIMEText(rendered.text, "plain", UTF8_QP)
        msg["Subject"] = rendered.subject if rendered.subject.isascii() else Header(rendered.subject, UTF8_QP)
        msg["From"] = formataddr((self.sender.display_name, self.sender.addr_spec), "utf-8")
        msg["To"] = recipient.addr_spec
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = f"<{message_id}@{self.sender.domain}>" if message_id else make_msgid(domain=self.sender.domain)
        # RFC 3834: no out-of-office replies or loops back to an unattended address.
        msg["Auto-Submitted"] = "auto-generated"
        msg["Content-Language"] = "ro, en"
        return msg

    def connections(self) -> "SmtpConnections":
        """Connections to send a dispatch pass's e-mails over (``send``'s ``over``)."""
        return SmtpConnections(self)

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(hostname=self.host, port=self.port, start_tls=self.starttls,
                               username=self.username, password=self.password, timeout=self.timeout,
                               tls_context=self.tls_context)

    async def send(self, to: str, rendered: RenderedMessage, message_id: str | None = None,
                   over: "SmtpConnections | None" = None) -> str:
        """Send one notice (over one of ``over``'s connections, else a connection of its own);
        the Message-ID it went with, or ChannelError."""
        msg = self.message(to, rendered, message_id)
        if over is None:
            async with self.connections() as own:
                await own.send(msg)
        else:
            await over.send(msg)
        return str(msg["Message-ID"])


class SmtpConnections:
    """The SMTP connections of one dispatch pass: a message goes over an idle one or a new
    one, so a pass of many e-mails pays one handshake (connect, EHLO, STARTTLS, login) per
    message in flight rather than per message; all are closed (QUIT) when the pass ends. A
    connection that failed is dropped, never reused; one the server closed while idle is
    replaced once."""

    def __init__(self, sender: SmtpSender) -> None:
        self._sender = sender
        self._idle: list[aiosmtplib.SMTP] = []
        self.opened = 0

    async def __aenter__(self) -> "SmtpConnections":
        return self

    async def __aexit__(self, *exc: object) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()

    async def send(self, msg: Message) -> None:
        reused = bool(self._idle)
        client = self._idle.pop() if reused else None
        try:
            if client is None:
                client = await self._connect()
            try:
                await client.send_message(msg)
            except aiosmtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                client.close()  # closed by the server while idle: once more, on a new one
                client = await self._connect()
                await client.send_message(msg)
        except (aiosmtplib.SMTPException, OSError) as exc:
            if client is not None:
                client.close()
            raise _from_smtp(exc) from exc
        except BaseException:  # cancelled (a timeout): the connection's state is unknown
            if client is not None:
                client.close()
            raise
        self._idle.append(client)

    async def _connect(self) -> aiosmtplib.SMTP:
        client = self._sender._client()
        await client.connect()
        self.opened += 1
        return client
