"""The embedded default's mail server (punte.mailbox) keeps what the network sent people
as it arrived: a pilot reading the Maildir, and the tests, find each message whole, its
Romanian subject and body decoded, with the envelope it came in."""
from __future__ import annotations

from pathlib import Path

from aiosmtpd.controller import Controller

from punte.embedded import free_port
from punte.mailbox import RawMaildir, messages
from services.notification.channels.email import SmtpSender
from services.notification.domain.templates import Rendered


async def test_a_message_is_kept_whole_with_its_envelope(tmp_path: Path):
    maildir = tmp_path / "mail"
    controller = Controller(RawMaildir(maildir), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        sender = SmtpSender(controller.hostname, controller.port, "punte@example.invalid", starttls=False)
        rendered = Rendered(subject="[Punte P1] Caz nou / New case · case-0001",
                            text="Un caz nou vă așteaptă în Punte.\n\n— English —\nA new case awaits you.\n")
        message_id = await sender.send("asistent@das-test.example.ro", rendered, "notice-1")
    finally:
        controller.stop()
    (kept,) = messages(maildir)
    assert kept["Subject"] == rendered.subject and kept["Message-ID"] == message_id
    assert kept.get_content() == rendered.text
    assert kept["X-RcptTo"] == "asistent@das-test.example.ro" and kept["X-MailFrom"] == "punte@example.invalid"
    assert kept["X-Peer"] == "127.0.0.1"
