"""A real SMTP server for the e-mail tests: aiosmtpd on 127.0.0.1, keeping what arrives."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

from aiosmtpd.controller import Controller

from punte.embedded import free_port


class Collector:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], EmailMessage]] = []
        self.connections: set[tuple[str, int]] = set()  # the client ends that sent a message

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        msg = message_from_bytes(envelope.original_content, policy=default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        self.connections.add(tuple(session.peer))
        return "250 OK"


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Controller, Collector]]:
    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, collector
    finally:
        with contextlib.suppress(AssertionError):  # a test may have stopped it already
            controller.stop()
