"""The embedded default's mail server: a real SMTP server on loopback that keeps every
message it receives in a Maildir (``.punte/mail``), so a pilot can read exactly what the
network sent people, and the tests can check it. Not a relay: nothing leaves the machine.

Run: ``python -m punte.mailbox --port 2525 --maildir .punte/mail``."""
from __future__ import annotations

import argparse
import mailbox
import signal
import threading
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from aiosmtpd.controller import Controller


class RawMaildir:
    """Keeps each message as it arrived, after the envelope lines aiosmtpd's own Mailbox
    handler adds (X-Peer, X-MailFrom, X-RcptTo). That handler parses and re-serialises every
    message: about half of the CPU keeping one cost (0.40 against 0.18 ms here); the rest is
    the file system's work of a Maildir (create, write, fsync, link)."""

    def __init__(self, maildir: Path) -> None:
        self.box = mailbox.Maildir(maildir)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        envelope_lines = (f"X-Peer: {session.peer[0]}\nX-MailFrom: {envelope.mail_from}\n"
                          f"X-RcptTo: {', '.join(envelope.rcpt_tos)}\n").encode()
        self.box.add(envelope_lines + envelope.original_content.replace(b"\r\n", b"\n"))
        return "250 OK"


def serve(port: int, maildir: Path) -> None:
    maildir.parent.mkdir(parents=True, exist_ok=True)  # Maildir makes its own tmp/new/cur
    controller = Controller(RawMaildir(maildir), hostname="127.0.0.1", port=port)
    controller.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        controller.stop()


def messages(maildir: Path) -> list[EmailMessage]:
    """Every message in the Maildir (roughly oldest first: Maildir names begin with the
    time), parsed with the modern e-mail policy."""
    if not (maildir / "new").is_dir():
        return []
    box = mailbox.Maildir(maildir, create=False)
    return [message_from_bytes(box.get_bytes(key), policy=default)  # type: ignore[misc]
            for key in sorted(box.keys())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args()
    serve(args.port, args.maildir)


if __name__ == "__main__":
    main()
