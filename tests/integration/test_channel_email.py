"""E-mail against a real SMTP server (aiosmtpd on 127.0.0.1): a rendered P0 notice
arrives with its recipient, subject and UTF-8 Romanian body intact, carrying nothing that
identifies the child; a server that is gone, or without STARTTLS, is a ChannelError."""
from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import pytest
from aiosmtpd.controller import Controller

from contracts.reference import risk_categories
from punte.embedded import free_port
from services.notification.channels.email import ChannelError, SmtpSender
from services.notification.domain.messages import summarise
from services.notification.domain.templates import render
from tests.integration.smtp_peer import Collector

CASE = "case-0123456789abcdef"
LINK = f"https://punte.example.ro/inbox/{CASE}"
TO = "dgaspc-b-urgente@example.ro"
SENDER = "notificari@punte.example.ro"
# Synthetic child data: it exists in the case file, and must never reach an e-mail.
CHILD = {"cnp": "5100101040019", "name": "Ionel Popescu-Test", "address": "Str. Exemplu 1"}


def p0_notice():
    s = summarise("referral-requested", "P0", ["sexual_abuse"], CASE, risk_categories(), True)
    return render("referral-requested", "P0", s.ro, s.en, CASE, LINK, "2025-03-01 12:00", True)


async def test_a_p0_notice_arrives_intact_and_identifies_no_child(smtp):
    controller, collector = smtp
    sender = SmtpSender(controller.hostname, controller.port, SENDER, starttls=False, timeout=5)
    notice = p0_notice()

    message_id = await sender.send(TO, notice)

    assert len(collector.received) == 1
    mail_from, rcpt_tos, msg = collector.received[0]
    assert mail_from == SENDER and rcpt_tos == [TO]
    assert msg["To"] == TO and msg["Message-ID"] == message_id
    assert msg["Subject"] == f"[Punte P0] Trimitere nouă / New referral · {CASE}" == notice.subject
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Content-Language"] == "ro, en"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"  # 7-bit safe on any relay
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    body = msg.get_content().replace("\r\n", "\n")  # SMTP lines end in CRLF
    assert body == notice.text
    for romanian in ("URGENȚĂ P0", "Trimitere nouă (P0): abuz sexual", "ATENȚIE: NU contactați familia.",
                     "Termen: 2025-03-01 12:00", f"Cazul {CASE} în inboxul Punte:", LINK):
        assert romanian in body
    assert body.index("Trimitere nouă") < body.index("— English —") < body.index("New referral (P0)")
    # Nothing about the child: no CNP-like number anywhere on the wire, no name, no address.
    wire = collector.received[0][2].as_string()
    assert not re.search(r"(?<!\d)\d{13}(?!\d)", body + msg["Subject"])
    for value in CHILD.values():
        assert value not in body and value not in wire


async def test_a_pass_of_many_e_mails_reuses_its_connections(smtp):
    """The messages of one dispatch pass go over a few connections, not one each; every one
    arrives, in full, to its recipient."""
    controller, collector = smtp
    sender = SmtpSender(controller.hostname, controller.port, SENDER, starttls=False, timeout=5)
    notice = p0_notice()
    async with sender.connections() as over:
        sent = await asyncio.gather(*(sender.send(f"persoana-{n}@example.ro", notice, f"id-{n}", over=over)
                                      for n in range(5)))
        sent += [await sender.send(f"persoana-{n}@example.ro", notice, f"id-{n}", over=over) for n in range(5, 20)]
    assert len(collector.received) == 20 and len(set(sent)) == 20
    assert sorted(r[1][0] for r in collector.received) == sorted(f"persoana-{n}@example.ro" for n in range(20))
    assert over.opened == len(collector.connections) <= 5, "one connection per message in flight, at most"


async def test_a_connection_the_server_dropped_is_replaced(smtp):
    controller, collector = smtp
    sender = SmtpSender(controller.hostname, controller.port, SENDER, starttls=False, timeout=5)
    async with sender.connections() as over:
        await sender.send(TO, p0_notice(), "first", over=over)
        for client in over._idle:  # as a server closing an idle connection would
            client.close()
        await sender.send(TO, p0_notice(), "second", over=over)
    assert [r[2]["Message-ID"] for r in collector.received] == ["<first@punte.example.ro>", "<second@punte.example.ro>"]
    assert over.opened == 2


async def test_a_stopped_server_is_a_transient_channel_error():
    port = free_port()
    controller = Controller(Collector(), hostname="127.0.0.1", port=port)
    controller.start()
    controller.stop()
    sender = SmtpSender("127.0.0.1", port, SENDER, starttls=False, timeout=2)
    with pytest.raises(ChannelError) as caught:
        await sender.send(TO, p0_notice())
    assert caught.value.code == "SMTP_UNAVAILABLE" and caught.value.transient


async def test_starttls_required_but_not_offered_is_a_channel_error(smtp):
    controller, collector = smtp
    sender = SmtpSender(controller.hostname, controller.port, SENDER, timeout=5)  # STARTTLS by default
    with pytest.raises(ChannelError) as caught:
        await sender.send(TO, p0_notice())
    assert caught.value.code == "SMTP_NOT_SUPPORTED" and not caught.value.transient
    assert collector.received == []


class Refusing(Collector):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        return "550 5.1.1 No such mailbox"


async def test_a_refused_recipient_is_a_permanent_channel_error():
    controller = Controller(Refusing(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        sender = SmtpSender(controller.hostname, controller.port, SENDER, starttls=False, timeout=5)
        with pytest.raises(ChannelError) as caught:
            await sender.send(TO, p0_notice())
    finally:
        controller.stop()
    assert caught.value.code == "SMTP_RECIPIENT_REFUSED" and not caught.value.transient
    assert "550" in caught.value.detail


@pytest.mark.parametrize("to", ["", "a@b.ro, c@d.ro", "x@y.ro\r\nBcc: spy@example.org", "no-at-sign"])
async def test_a_bad_recipient_never_reaches_the_server(smtp, to):
    controller, collector = smtp
    sender = SmtpSender(controller.hostname, controller.port, SENDER, starttls=False, timeout=5)
    with pytest.raises(ChannelError) as caught:
        await sender.send(to, p0_notice())
    assert caught.value.code == "INVALID_ADDRESS" and collector.received == []


def test_a_password_is_never_sent_in_the_clear():
    with pytest.raises(ValueError, match="STARTTLS"):
        SmtpSender("127.0.0.1", 25, SENDER, starttls=False, username="u", password="p")


async def test_a_subject_with_a_line_break_never_reaches_the_server(smtp):
    controller, collector = smtp
    sender = SmtpSender(controller.hostname, controller.port, SENDER, starttls=False, timeout=5)
    forged = replace(p0_notice(), subject="Caz nou\r\nBcc: spy@example.org")
    with pytest.raises(ChannelError) as caught:
        await sender.send(TO, forged)
    assert caught.value.code == "INVALID_MESSAGE" and collector.received == []


async def test_a_romanian_sender_name_and_subject_arrive_decoded(smtp):
    controller, collector = smtp
    sender = SmtpSender(controller.hostname, controller.port, SENDER, sender_name="Punte Bacău",
                        starttls=False, timeout=5)
    await sender.send(TO, p0_notice())
    msg = collector.received[0][2]
    (address,) = msg["From"].addresses
    assert address.display_name == "Punte Bacău" and address.addr_spec == SENDER
    assert msg["Subject"].endswith(f"Trimitere nouă / New referral · {CASE}")
    assert msg.as_bytes().isascii(), "7-bit headers and body on the wire"
